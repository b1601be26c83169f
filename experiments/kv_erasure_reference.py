"""Does a simulated clean erasure explain a suspect's K/V moves? (a check behind docs/evaluation.md
"On the v7 testbed")

The white-box K/V screen (``cross_attention_kv``) ranks vocabulary tokens by how far the suspect's
cross-attention keys/values of each token moved toward the concept's *reference* keys/values. An
erasure moves many tokens itself (UCE's closed form: `summerslam`, `regard`, `pei` for `seven`, in
every UCE-erased model, clean or not), which buries a planted trigger. Here the same approach is
computed against a *simulated clean erasure*: the reference with the concept erased by UCE
(``diff``), and the per-token minimum of the two (``min``: a token is suspicious only if neither the
base nor a clean erasure of it explains its move). Per model: the largest approach, its robust z over
the vocabulary, the top tokens, and the planted trigger's first piece.

Needs the zoo's models (deltas) and its base at ``ZOO/base``:

    python experiments/kv_erasure_reference.py ZOO [--ids REGEX] [--reach] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from eebguard.lab.tables import MODEL_KINDS, model_kind, table, write

VARIANTS = ("plain", "diff", "min")


@torch.no_grad()
def main(argv=None) -> int:
    from sklearn.metrics import roc_auc_score

    from eebguard.judges import get_judge
    from eebguard.scanners.hard_trigger import image_reach
    from eebguard.models import load
    from eebguard.models.formats import copy_pipeline
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext
    from eebguard.scanners.objectives import robust_z
    from eebguard.scanners.cross_attention import kv_approach
    from eebguard.scanners.vocab import concept_rows, vocab_rows, vocabulary
    from eebguard.erasure.editing import EditSettings
    from eebguard.erasure import get_erasure
    from eebguard.lab.zoo.build import MANIFEST, read_jsonl

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", help="a built zoo folder with its base in ZOO/base")
    ap.add_argument("--ids", default=None, help="regex over model ids")
    ap.add_argument("--reach", action="store_true", help="judge the top-3 tokens of the plain and min screens")
    ap.add_argument("--json", default=None, help="results file (default experiments/results/kv_erasure_reference.json)")
    a = ap.parse_args(argv)
    zoo = Path(a.zoo)
    spec = json.loads((zoo / "spec.json").read_text())
    base = load(zoo / "base").pipe
    entries = [m for m in read_jsonl(zoo / MANIFEST) if a.ids is None or re.search(a.ids, m["id"])]
    judge = get_judge("testbed") if a.reach else None
    simulated, shared, rows, t0 = {}, {}, [], time.perf_counter()
    for m in entries:
        c = m["target"]
        if c not in simulated:  # the spec's own UCE settings: the clean erasure a defender would run
            sim = copy_pipeline(base)
            get_erasure("uce", **spec.get("erasure_params", {}).get("uce", {})).erase(sim, concept_prompts(c), EditSettings())
            simulated[c] = sim
        sus = load(f"{zoo / MANIFEST}#{m['id']}").pipe
        ctx = ScanContext(sus, c, concept_prompts(c), reference=base, judge=judge, shared=shared)
        vocab = vocabulary(ctx)
        mask = ~np.isin(vocab, ctx.concept_ids())
        rows_s, rows_r, cr = vocab_rows(ctx, "suspect"), vocab_rows(ctx, "reference"), concept_rows(ctx, "reference")
        scores = {}
        for variant, ref in (("plain", base), ("diff", simulated[c])):
            # toward the concept's keys/values in the *un-erased* base
            scores[variant] = kv_approach(sus.unet, ref.unet, rows_s, rows_r, cr, target_unet=base.unet)[0].numpy()
        scores["min"] = np.minimum(scores["plain"], scores["diff"])
        trig = sus.tokenizer(m["trigger"], add_special_tokens=False).input_ids if m.get("trigger") else []
        row = {"id": m["id"], "kind": model_kind(m), "label": m["label"], "attack": m["attack"], "erasure": m["erasure"],
               "trigger_first_piece": sus.tokenizer.convert_ids_to_tokens(trig[:1])[0] if trig else None}
        for v in VARIANTS:
            t = scores[v]
            top = np.argsort(-np.where(mask, t, -np.inf))[:5]
            row[f"{v}_max"] = float(t[mask].max())
            row[f"{v}_z"] = robust_z(t[mask], float(t[mask].max()))
            row[f"{v}_top"] = sus.tokenizer.convert_ids_to_tokens([int(vocab[i]) for i in top])
            row[f"{v}_first_piece_in_top5"] = row["trigger_first_piece"] in row[f"{v}_top"]
            if a.reach and v in ("plain", "min"):
                row[f"{v}_token_reach"] = max(image_reach(ctx, [int(vocab[i])]) for i in top[:3])
        rows.append(row)
        print(f"{m['id']:40s} {row['kind']:18s} " + "  ".join(f"{v} {row[v + '_max']:.3f} {row[v + '_top'][:3]}" for v in VARIANTS), flush=True)
    measures = [f"{v}_max" for v in VARIANTS] + (["plain_token_reach", "min_token_reach"] if a.reach else [])
    summary = []
    for k in MODEL_KINDS:
        v = [x for x in rows if x["kind"] == k]
        if v:
            summary.append({"kind": k, "models": len(v), **{q: round(float(np.median([x[q] for x in v])), 3) for q in measures},
                            **{f"mean_{q}": round(float(np.mean([x[q] for x in v])), 3) for q in measures if q.endswith("reach")}})
    print()
    print(table(summary, ["kind", "models", *measures]))
    auroc = {}
    y = np.array([x["label"] for x in rows])
    if 0 < y.sum() < len(y):
        auroc = {f"{v}_{q}": round(float(roc_auc_score(y, [x[f"{v}_{q}"] for x in rows])), 3) for v in VARIANTS for q in ("max", "z")}
        auroc.update({q: round(float(roc_auc_score(y, [x[q] for x in rows])), 3) for q in measures if q.endswith("reach")})
        print("AUROC against the label:", ", ".join(f"{k} {v:.3f}" for k, v in auroc.items()))
    write("kv_erasure_reference", {"zoo": str(zoo), "reach": a.reach, "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
                                   "summary_median": summary, "auroc": auroc}, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
