"""Which other concepts an erasure costs, per concept, on a clean and on an attacked model of one spec.

The zoos measure the other concepts with 3 images each (39 in all), enough for the mean the threat
lab's bound needs but not to say *which* concept an erasure took. For each named group of a spec this
rebuilds the model before erasure (the zoo's own code and seeds), erases it, and judges every other
concept with ``--other-samples`` images before and after (a check behind docs/threat-lab.md, "What
misses the issue's bounds"):

    python benchmarks/erasure_other_concepts.py --spec heldout --groups three-none-s1,three-data-s1 --erasure esd_u
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="heldout")
    ap.add_argument("--groups", default="three-none-s1,three-data-s1", help="group ids of the spec")
    ap.add_argument("--erasure", default="esd_u")
    ap.add_argument("--other-samples", type=int, default=12)
    ap.add_argument("--json", default=None, help="default: results/erasure_other_concepts.json")
    a = ap.parse_args()

    from eebguard.judges import get_judge
    from eebguard.models import load
    from eebguard.models.formats import copy_pipeline
    from eebguard.probes import concept_prompts
    from eebguard.threats.erasure import get_erasure
    from eebguard.zoo.build import edit_settings, prepare_model
    from eebguard.zoo.measure import measure_model
    from eebguard.zoo.spec import load_spec, plan

    spec = load_spec(a.spec)
    plans = {m.id: m for m in plan(spec)}
    judge, base = get_judge("testbed"), load(spec.get("base", "testbed")).pipe
    samples = int(spec.get("samples", 30))
    rows, runs = [], []
    for gid in [g for g in a.groups.split(",") if g]:
        m = plans.get(f"{gid}-{a.erasure}")
        if m is None:
            raise SystemExit(f"{a.spec} has no model {gid}-{a.erasure}")
        s = edit_settings(spec, m.seed, {})
        t0 = time.perf_counter()
        attacked, _ = prepare_model(base, m, spec, s)
        erased = copy_pipeline(attacked)
        get_erasure(m.erasure, **spec.get("erasure_params", {}).get(m.erasure, {})).erase_many(
            erased, [concept_prompts(m.target)], s)
        meas = {when: measure_model(p, judge, m.target, m.trigger, m.mode, samples, a.other_samples, m.seed)
                for when, p in (("before", attacked), ("after", erased))}
        runs.append({"id": m.id, "seconds": round(time.perf_counter() - t0, 1),
                     **{w: {k: v for k, v in x.items() if k != "sampler"} for w, x in meas.items()}})
        for c in meas["before"]["other_per_concept"]:
            rows.append({"model": m.id, "concept": c, "before": meas["before"]["other_per_concept"][c],
                         "after": meas["after"]["other_per_concept"][c]})
        rows.append({"model": m.id, "concept": "(mean)", "before": meas["before"]["other_accuracy"],
                     "after": meas["after"]["other_accuracy"]})
    print(table(rows, ["model", "concept", "before", "after"]))
    path = write("erasure_other_concepts", {"spec": a.spec, "erasure": a.erasure, "other_samples": a.other_samples,
                                            "models": runs, "rows": rows,
                                            "command": "python benchmarks/erasure_other_concepts.py " + " ".join(sys.argv[1:])},
                 a.json)
    print(path)


if __name__ == "__main__":
    main()
