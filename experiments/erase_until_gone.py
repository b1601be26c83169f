"""A defender's rule for a by-name erasure that leaves the name working: apply the method again, to its own
output, until the name prompts are judged the concept at most ``--bound`` of the time (at most ``--rounds``
applications). Rebuilds chosen zoo models' starting points with the zoo's own code and seeds
(``prepare_model``), erases them with the spec's method and parameters, and measures after every round as
the zoo builder does (name accuracy, trigger ASR, other-concept accuracy; 30 / 3 samples).

    python experiments/erase_until_gone.py --spec default \\
        --ids circle-none-s0-esd_u,circle-surface-s0-esd_u,circle-deep-s0-esd_u,circle-data-s0-esd_u

Round 1 is the zoo's own model (its measurements should equal the zoo record's). Prints a table; writes
experiments/results/erase_until_gone.json. Exploratory: the zoos and their tables are built without it.

``--scales 1,1.25,1.5,1.75`` asks the other question, a longer single run instead of repeated ones: each
scale erases a fresh copy of the starting point with the method's training steps multiplied by it (scale
1 is again the zoo's own model), so the name/other-concept trade-off of one method's budget is traced.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from eebguard.lab.tables import table, write


def _rates(pipe, judge, m, samples: int, other: int) -> dict:
    """Measured as the zoo builder measures: name accuracy, trigger ASR, other-concept accuracy."""
    from eebguard.lab.zoo.measure import measure_model

    meas = measure_model(pipe, judge, m.target, m.trigger, m.mode, samples, other, m.seed)
    return {k: meas[k] for k in ("name_accuracy", "trigger_asr", "other_accuracy")}


def main(argv=None) -> int:
    from eebguard.judges import get_judge
    from eebguard.models import load
    from eebguard.models.formats import copy_pipeline
    from eebguard.lab.zoo.build import edit_settings, erase_planned, prepare_model
    from eebguard.lab.zoo.spec import load_spec, plan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="default")
    ap.add_argument("--ids", required=True, help="comma-separated zoo model ids")
    ap.add_argument("--bound", type=float, default=0.15, help="name accuracy at which the defender stops (rounds only)")
    ap.add_argument("--rounds", type=int, default=3, help="applications of the method at most (rounds only)")
    ap.add_argument("--scales", default=None, help="comma-separated step multipliers: trace one run's budget instead")
    ap.add_argument("--json", default=None, help="results file (default experiments/results/erase_until_gone.json)")
    a = ap.parse_args(argv)
    spec = load_spec(a.spec)
    plans = {m.id: m for m in plan(spec)}
    unknown = [i for i in a.ids.split(",") if i not in plans]
    if unknown:
        ap.error(f"not in spec {a.spec!r}: {', '.join(unknown)}")
    judge = get_judge("testbed")
    base = load(spec.get("base", "testbed")).pipe
    samples, other = int(spec.get("samples", 30)), int(spec.get("other_samples", 3))
    rows, printed = [], []
    for mid in a.ids.split(","):
        m = plans[mid]
        s = edit_settings(spec, m.seed, {})
        t0 = time.perf_counter()
        pipe, _ = prepare_model(base, m, spec, s)
        prep_s = time.perf_counter() - t0
        rounds = []

        def erase_and_measure(p, label: dict, scale: float = 1.0) -> dict:
            t1 = time.perf_counter()
            erase_planned(p, m, spec, replace(s, steps_scale=s.steps_scale * scale))
            rounds.append({**label, **_rates(p, judge, m, samples, other), "seconds": round(time.perf_counter() - t1, 1)})
            printed.append({"model": mid, **rounds[-1]})
            print(printed[-1], flush=True)
            return rounds[-1]

        if a.scales:  # one run per scale, each from a fresh copy of the starting point
            for k in (float(x) for x in a.scales.split(",")):
                erase_and_measure(copy_pipeline(pipe), {"scale": k}, k)
        else:  # repeated applications to the same model until the name is gone
            for r in range(1, a.rounds + 1):
                if erase_and_measure(pipe, {"round": r})["name_accuracy"] <= a.bound:
                    break
        rows.append({"id": mid, "attack": m.attack, "erasure": m.erasure, "target": m.target,
                     "prepare_seconds": round(prep_s, 1), "rounds": rounds})
    print(table(printed, list(printed[0])))
    print(write("erase_until_gone", {"spec": a.spec, "bound": a.bound, "max_rounds": a.rounds, "scales": a.scales,
                                     "models": rows}, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
