"""What storage precision alone does to the white-box features: the reference itself, its weights
rounded through bfloat16 or float16 (text encoder, U-Net, or both) and back, scanned against the
untouched reference by the `text_embedding` and `cross_attention_kv` scanners. A model shipped in lower
precision than its reference differs from it by exactly this much without any edit.

    python experiments/precision_rounding.py            # experiments/results/precision_rounding.json
"""
from __future__ import annotations

import argparse

from eebguard.lab.tables import table, write

SCANNERS = ["text_embedding", "cross_attention_kv"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default="testbed")
    ap.add_argument("--concept", default="seven")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import torch

    from eebguard.models import load
    from eebguard.models.precision import rounded_copy
    from eebguard.probes.templates import concept_prompts
    from eebguard.scanners import run_scanners
    from eebguard.scanners.context import ScanContext
    from eebguard.scanners.settings import settings_for

    ref = load(a.reference).pipe
    rows = []
    for dtype in ("bfloat16", "float16"):
        for parts in (("text_encoder",), ("unet",), ("text_encoder", "unet")):
            sus = rounded_copy(ref, {part: getattr(torch, dtype) for part in parts})
            ctx = ScanContext(sus, a.concept, concept_prompts(a.concept), reference=ref, settings=settings_for("default"))
            f = run_scanners(ctx, names=SCANNERS)
            top = f.evidence.get("text_embedding", {}).get("top_te_approach", [{}])[0]
            rows.append({"rounded": f"{'+'.join(parts)} via {dtype}", **{k: round(v, 4) for k, v in sorted(f.values.items())},
                         "top_te_token": top.get("token"), "top_te_score": top.get("score")})
    cols = list(rows[0])
    print(table(rows, cols))
    print(write("precision_rounding", {"reference": a.reference, "concept": a.concept, "rows": rows}, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
