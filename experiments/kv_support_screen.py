"""Route (g) of docs/scanners.md: does the input support of a suspect's K/V change name its trigger's pieces?

For each zoo model given: every ``attn2`` ``to_k``/``to_v`` change of the suspect, relative to the
reference and relative to the reference erased by the model's recorded erasure (the replay the
``erasure_replay`` scanner builds), each scaled by the layer's reference norm and stacked; its top-k
right singular vectors; and, for each BPE piece of the planted trigger *given the planted prefix*, the
rank among the vocabulary of the piece's share of its encoder row (first 4 templates, mean) inside that
subspace (``k=1,2,4``), or of the change applied to it (``weighted``). Rank 0 is the best. Exploratory:
it reads the planted trigger, so it measures what the weights reveal, not what a scan could find.

    python experiments/kv_support_screen.py zoos/fifth-check --ids six-shallow-s4-uce,nine-shallow-s4-uce [--json PATH]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from eebguard.lab.tables import write


@torch.no_grad()
def kv_change(a, b) -> torch.Tensor:
    """Every attn2 K/V weight of ``a`` minus ``b``'s, each scaled by ``b``'s norm, stacked by rows."""
    from eebguard.erasure.editing import kv_layers

    rows = []
    for (_, ka, va), (_, kb, vb) in zip(kv_layers(a.unet), kv_layers(b.unet)):
        for x, y in ((ka, kb), (va, vb)):
            rows.append((x.weight - y.weight).float() / max(float(y.weight.float().norm()), 1e-8))
    return torch.cat(rows)


@torch.no_grad()
def rows_after(ctx, encoder, prefix: list[int], templates, batch: int = 2048) -> torch.Tensor:
    """Encoder row at the position after ``prefix`` for every vocabulary token in each template: [T, V, D]."""
    from eebguard.scanners.vocab import vocabulary
    from eebguard.text import ids_batch

    vocab = vocabulary(ctx)
    out = []
    for tpl in templates:
        pos = tpl.slot_start() + len(prefix)
        parts = [encoder(ids_batch(ctx.tokenizer, [tpl], [prefix + [int(v)] for v in vocab[i:i + batch]]))[0][:, pos]
                 for i in range(0, len(vocab), batch)]
        out.append(torch.cat(parts).float())
    return torch.stack(out)


def piece_ranks(ctx, change: torch.Tensor, rows: list[torch.Tensor], pieces: list[int]) -> dict:
    from eebguard.scanners.vocab import vocabulary

    vocab = torch.as_tensor(vocabulary(ctx))
    _, _, vt = torch.linalg.svd(change, full_matrices=False)
    scorers = {f"k={k}": (lambda r, v=vt[:k]: (r @ v.T).norm(dim=-1) / r.norm(dim=-1)) for k in (1, 2, 4)}
    scorers["weighted"] = lambda r: (r @ change.T).norm(dim=-1) / r.norm(dim=-1)
    out = {}
    for name, score in scorers.items():
        ranks = []
        for piece, r in zip(pieces, rows):
            order = vocab[torch.argsort(-score(r).mean(0))]
            ranks.append(int((order == piece).nonzero()[0][0]))
        out[name] = ranks
    return out


def main(argv=None) -> int:
    from eebguard.models import load, load_manifest
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext, ScanSettings
    from eebguard.erasure.replay import erased_copy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--ids", required=True, help="comma-separated model ids (backdoored, with a recorded erasure)")
    ap.add_argument("--reference", default="testbed")
    ap.add_argument("--json", default=None, help="results file (default experiments/results/kv_support_screen.json)")
    a = ap.parse_args(argv)
    manifest = Path(a.zoo) / "manifest.jsonl"
    entries = {e["id"]: e for e in load_manifest(manifest)}
    ref = load(a.reference).pipe
    replays, out = {}, []
    for mid in a.ids.split(","):
        e = entries[mid]
        sus = load(f"{manifest}#{mid}").pipe
        key = (e["target"], e["erasure"])
        if key not in replays:
            replays[key] = erased_copy(ref, *key)
        ctx = ScanContext(sus, e["target"], concept_prompts(e["target"]), reference=ref, settings=ScanSettings())
        pieces = ctx.tokenizer(e["trigger"], add_special_tokens=False).input_ids
        templates = ctx.templates()[:4]
        rows = [rows_after(ctx, sus.text_encoder, pieces[:p], templates) for p in range(len(pieces))]
        row = {"id": mid, "trigger": e["trigger"], "pieces": ctx.tokenizer.convert_ids_to_tokens(pieces),
               "minus_reference": piece_ranks(ctx, kv_change(sus, ref), rows, pieces),
               "minus_replay": piece_ranks(ctx, kv_change(sus, replays[key]), rows, pieces)}
        print(json.dumps(row), flush=True)
        out.append(row)
    print("\nwrote", write("kv_support_screen", {"zoo": a.zoo, "rows": out}, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
