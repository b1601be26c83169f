"""Is the recovered trigger a planted link or an erasure's leak? Four re-measurements of the trigger the
scan recorded, on the suspect model itself (a check behind docs/evaluation.md "On the v7 testbed").

The hard-trigger search finds discrete prompts that bring the concept back in clean erased models too
(an erasure's leaks), and the shipped detector cannot tell those from a planted trigger. A planted
trigger was trained into the model over the concept's templates and seeds; a leak was selected by a
search over the scanner's own templates and 8 judged images. For each scanned model this measures:

- ``fresh_reach``: the best recorded trigger's judged reach on 16 new images (another sampling seed):
  the recorded reach is the best of three candidates on 8 images, so a leak of middling reach is
  favoured by the selection (winner's curse) and should fall back on fresh images;
- ``append_reach``: the trigger appended to neutral prompts of the family instead of in the slot;
- ``generic_reach``: the trigger in generic templates (``a painting of {}``) the scan does not use;
- ``kv_token_reach``: the highest judged reach of the top-3 tokens the white-box K/V screen flagged
  (tokens whose cross-attention keys/values moved toward the concept), alone in the slot.

Needs the zoo's models (deltas), not only the staged rows, and the base:

    python experiments/trigger_specificity.py ZOO [--ids REGEX] [--json PATH]
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from eebguard.lab.tables import MODEL_KINDS, model_kind, table, write

MEASURES = ("recorded_reach", "fresh_reach", "append_reach", "generic_reach", "kv_token_reach")


def main(argv=None) -> int:
    from sklearn.metrics import roc_auc_score

    from eebguard.lab.evaluate.evaluate import load_rows
    from eebguard.judges import get_judge
    from eebguard.models import load
    from eebguard.probes import concept_prompts
    from eebguard.probes.templates import GENERIC_TEMPLATES
    from eebguard.scanners import ScanContext, ScanSettings
    from eebguard.scanners.hard_trigger import image_reach
    from eebguard.lab.zoo.build import MANIFEST

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", help="a built zoo folder (its manifest, features and model deltas)")
    ap.add_argument("--ids", default=None, help="regex over model ids")
    ap.add_argument("--json", default=None, help="results file (default experiments/results/trigger_specificity.json)")
    a = ap.parse_args(argv)
    zoo = Path(a.zoo)
    rows_in = [r for r in load_rows([zoo]) if a.ids is None or re.search(a.ids, r["id"])]
    judge = get_judge("testbed")
    rows, t0 = [], time.perf_counter()
    for r in rows_in:
        ev = r["scan"]["features"]["evidence"]
        triggers = (ev.get("hard_trigger") or {}).get("triggers")
        if not triggers or triggers[0]["image_reach"] is None:
            continue
        best = triggers[0]
        pipe = load(f"{zoo / MANIFEST}#{r['id']}").pipe
        cp = concept_prompts(r["target"])

        def reach(prompts, ids, n=8, seed=0):
            ctx = ScanContext(pipe, r["target"], prompts, judge=judge, settings=ScanSettings(seed=seed))
            return image_reach(ctx, list(ids), n)

        appended = concept_prompts(r["target"], templates=[f"{p} {{}}" for p in cp.neutral])
        generic = concept_prompts(r["target"], templates=list(GENERIC_TEMPLATES))
        kv = [t["id"] for t in (ev.get("cross_attention_kv") or {}).get("top_kv_approach", [])[:3]]
        row = {"id": r["id"], "kind": model_kind(r), "label": r["label"], "trigger": best["text"],
               "recorded_reach": best["image_reach"],
               "fresh_reach": reach(cp, best["ids"], 16, seed=1),
               "append_reach": reach(appended, best["ids"]),
               "generic_reach": reach(generic, best["ids"]),
               "kv_token_reach": max((reach(cp, [i]) for i in kv), default=0.0)}
        rows.append(row)
        print(f"{row['id']:40s} {row['kind']:18s} " + " ".join(f"{row[m]:.2f}" for m in MEASURES), flush=True)
    summary = []
    for k in MODEL_KINDS:
        v = [x for x in rows if x["kind"] == k]
        if v:
            summary.append({"kind": k, "models": len(v), **{m: round(float(np.mean([x[m] for x in v])), 3) for m in MEASURES}})
    print()
    print(table(summary, ["kind", "models", *MEASURES]))
    auroc = {}
    # all models against the label, and the hard case: clean backdoors against negatives whose search
    # found a trigger with recorded reach >= 0.5 (the leaks the shipped detector mistakes for backdoors)
    hard = [x for x in rows if x["kind"] == "clean backdoor" or (not x["label"] and x["recorded_reach"] >= 0.5)]
    for name, subset in (("all", rows), ("clean backdoors vs leaky negatives", hard)):
        y = np.array([x["label"] for x in subset])
        if 0 < y.sum() < len(y):
            auroc[name] = {m: round(float(roc_auc_score(y, [x[m] for x in subset])), 3) for m in MEASURES}
            auroc[name]["models"] = len(subset)
    for name, v in auroc.items():
        print(f"AUROC ({name}, {v['models']} models): " + ", ".join(f"{m} {v[m]:.3f}" for m in MEASURES))
    write("trigger_specificity", {"zoo": str(zoo), "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
                                  "summary": summary, "auroc": auroc}, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
