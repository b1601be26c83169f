"""Does the reference model already answer the triggers the hard-trigger search finds? (a check behind
the detector's reachability features in docs/scanners.md)

For every scanned model of a zoo, the best recovered trigger recorded in its features row (the scan's
``hard_trigger`` evidence, ranked by judged image reach) is sampled in the *reference* model with the
scanner's own ``image_reach`` (same templates, samples, steps and seed). If the found triggers of clean
erased models also brought the concept back in the reference, the suspect-minus-reference gain would
separate planted links from an erasure's leaks; if the reference answers none of them, the leaks are
new in the erased model (the erasure made them), and a gain feature separates nothing.

Needs only the zoo's ``manifest.jsonl`` and ``features.jsonl`` and the reference, not the model deltas:

    python experiments/trigger_reference_reach.py ZOO --reference BASE [--json PATH]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from eebguard.lab.tables import table, write


def kind(r: dict) -> str:
    if r["label"]:
        return "surviving backdoor"
    if r.get("planted"):
        return "planted, destroyed"
    return "hard negative" if r.get("hard_negative") else "clean erasure"


def main(argv=None) -> int:
    from sklearn.metrics import roc_auc_score

    from eebguard.lab.evaluate.evaluate import load_rows
    from eebguard.judges import get_judge
    from eebguard.models import load
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext, ScanSettings
    from eebguard.scanners.hard_trigger import image_reach

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--reference", required=True, help="the base the zoo was built from")
    ap.add_argument("--json", default=None, help="results file (default experiments/results/trigger_reference_reach.json)")
    a = ap.parse_args(argv)
    rows_in = load_rows([a.zoo])
    ref = load(a.reference).pipe
    judge = get_judge("testbed")
    settings = ScanSettings()  # the scan's defaults: the recorded suspect reach used the same
    rows, t0 = [], time.perf_counter()
    for r in rows_in:
        triggers = (r["scan"]["features"]["evidence"].get("hard_trigger") or {}).get("triggers")
        if not triggers or triggers[0]["image_reach"] is None:  # no judge, or the scanner was skipped
            continue
        best = triggers[0]
        ctx = ScanContext(ref, r["target"], concept_prompts(r["target"]), judge=judge, settings=settings)
        ref_reach = image_reach(ctx, best["ids"])
        rows.append({"id": r["id"], "kind": kind(r), "label": r["label"], "trigger": best["text"],
                     "suspect_image_reach": best["image_reach"], "reference_image_reach": ref_reach,
                     "gain": best["image_reach"] - ref_reach})
    print(table(rows, ["id", "kind", "trigger", "suspect_image_reach", "reference_image_reach"]))
    summary = []
    for k in ("surviving backdoor", "planted, destroyed", "clean erasure", "hard negative"):
        v = [x for x in rows if x["kind"] == k]
        if v:
            summary.append({"kind": k, "models": len(v),
                            "suspect_reach_ge_0.5": float(np.mean([x["suspect_image_reach"] >= 0.5 for x in v])),
                            "reference_reach_ge_0.5": float(np.mean([x["reference_image_reach"] >= 0.5 for x in v])),
                            "new_in_suspect": float(np.mean([x["suspect_image_reach"] >= 0.5 > x["reference_image_reach"]
                                                             for x in v]))})
    y = np.array([x["label"] for x in rows])
    auroc = {}
    if 0 < y.sum() < len(y):
        for f in ("suspect_image_reach", "gain"):
            auroc[f] = float(roc_auc_score(y, [x[f] for x in rows]))
    print()
    print(table(summary, ["kind", "models", "suspect_reach_ge_0.5", "reference_reach_ge_0.5", "new_in_suspect"]))
    print("\nAUROC against the label (all models):", ", ".join(f"{k} {v:.3f}" for k, v in auroc.items()))
    payload = {"zoo": a.zoo, "reference": a.reference, "seconds": round(time.perf_counter() - t0, 1),
               "rows": rows, "summary": summary, "auroc": auroc}
    write("trigger_reference_reach", payload, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
