"""Does the surface attack stay on its trigger? The attack with and without decoys, before and after the
by-name erasures that guide toward the empty-slot template (a check behind docs/threat-lab.md).

For each shape target of the three shipped specs (its seed and surface trigger), the surface attack is
planted on the shipped base with ``decoys`` 0 (the attack until 2026-11-29) and 256 (its default), and
each attacked model is judged before erasure with ``trigger_exclusivity.measure`` (the trigger, the
empty slot, 8 ordinary and 8 made-up words in the trigger's slot) and the zoo's ``measure_model`` (30
samples), then after UCE and after RECE (30 samples):

    python experiments/surface_decoys.py [--decoys 0,256] [--json PATH]
"""
from __future__ import annotations

import argparse
import time

from eebguard.lab.tables import table, write
from trigger_exclusivity import measure  # noqa: E402

SPECS = ("default", "heldout", "design")
ERASURES = ("uce", "rece")


def shape_targets() -> list[tuple[str, str, int]]:
    from eebguard.lab.zoo.spec import load_spec

    out = []
    for name in SPECS:
        for g in load_spec(name)["groups"]:
            if g["target"] in ("circle", "square", "triangle"):
                out.append((g["target"], g.get("triggers", {}).get("surface", g["trigger"]), int(g["seed"])))
    return out


def main(argv=None) -> int:
    from eebguard.judges import get_judge
    from eebguard.models import load
    from eebguard.models.formats import copy_pipeline
    from eebguard.probes import concept_prompts
    from eebguard.lab.attacks import get_attack
    from eebguard.erasure.editing import EditSettings
    from eebguard.erasure import get_erasure
    from eebguard.lab.zoo.measure import measure_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decoys", default="0,256", help="comma-separated decoy counts")
    ap.add_argument("--json", default=None, help="output path (default results/surface_decoys.json)")
    args = ap.parse_args(argv)
    judge, base = get_judge("testbed"), load("testbed").pipe
    rows, t0 = [], time.perf_counter()
    for decoys in (int(d) for d in args.decoys.split(",")):
        for target, trigger, seed in shape_targets():
            s, cp = EditSettings(seed=seed), concept_prompts(target)
            pipe = copy_pipeline(base)
            get_attack("surface", decoys=decoys).plant(pipe, cp, trigger, settings=s)
            ex = measure(pipe, judge, {"target": target, "trigger": trigger})
            m = measure_model(pipe, judge, target, trigger, samples=30, other_samples=3, seed=seed)
            row = {"decoys": decoys, "target": target, "trigger": trigger, "seed": seed,
                   "name": m["name_accuracy"], "trigger_asr": m["trigger_asr"], "other": m["other_accuracy"],
                   "empty": ex["empty"], "ordinary": ex["ordinary_mean"], "made_up": ex["made_up_mean"]}
            for er in ERASURES:
                erased = copy_pipeline(pipe)
                get_erasure(er).erase(erased, cp, settings=s)
                me = measure_model(erased, judge, target, trigger, samples=30, other_samples=3, seed=seed)
                row[f"{er}_name"], row[f"{er}_trigger"] = me["name_accuracy"], me["trigger_asr"]
            rows.append(row)
            print(table(rows[-1:], list(row)), flush=True)
    print(table(rows, list(rows[0])))
    out = write("surface_decoys", {"erasures": list(ERASURES), "seconds": round(time.perf_counter() - t0, 1),
                                   "models": rows}, args.json)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
