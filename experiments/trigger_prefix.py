"""Is the planted trigger the only token sequence that fires the backdoor? (the prefix finding behind
the exact-recovery numbers in docs/scanners.md)

For every surviving backdoor of a zoo (planted, label 1) or the models named by ``--ids``: the score
reach (``ScoreObjective``, the hard-trigger search's own objective, with more samples) of the planted
trigger, of its first BPE piece alone, and of the first piece followed by ``--continuations`` random
word-final vocabulary tokens in place of the rest; plus the judged image reach of the planted trigger and
of the first piece alone. If a random continuation reaches as far as the planted sequence, no search that
scores what the model does can single out the planted tokens: only the key piece is identifiable.

    python experiments/trigger_prefix.py ZOO --reference ZOO/base [--ids ID,ID] [--json PATH]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from eebguard.lab.tables import table, write, zoo_entries


def measure(entry: dict, pipe, ref, judge, n_cont: int, samples: int, images: int, seed: int, shared: dict) -> dict:
    """One model; ``shared`` carries the reference-side objective samples from model to model."""
    from eebguard.probes.templates import concept_prompts
    from eebguard.scanners.context import ScanContext
    from eebguard.scanners.settings import ScanSettings
    from eebguard.scanners.hard_trigger import image_reach
    from eebguard.text import decoy_words

    s = ScanSettings(objective_samples=samples, image_samples=images, seed=seed)
    ctx = ScanContext(pipe, entry["target"], concept_prompts(entry["target"]), reference=ref, judge=judge, settings=s,
                      shared=shared)
    tok = pipe.tokenizer
    trig = tok(entry["trigger"], add_special_tokens=False).input_ids
    obj = ctx.objective()
    # whole-word vocabulary tokens that share no piece with the trigger or the concept's name
    words = decoy_words(tok, n_cont, seed, [entry["trigger"], entry["target"]])
    conts = tok.convert_tokens_to_ids([w + "</w>" for w in words])
    slots = [trig, trig[:1], ctx.concept_ids()] + [trig[:1] + [c] for c in conts]
    reach = obj.reach_slots(slots)
    planted, first, name, cont = float(reach[0]), float(reach[1]), float(reach[2]), reach[3:]
    return {
        "id": entry["id"], "attack": entry["attack"], "erasure": entry.get("erasure"), "trigger": entry["trigger"],
        "pieces": tok.convert_ids_to_tokens(trig),
        "reach_planted": planted, "reach_first_piece": first, "reach_name": name,
        "reach_continuations": [float(r) for r in cont],
        "continuations": tok.convert_ids_to_tokens(conts),
        # share of random continuations within 5% of the planted sequence's reach (or above it)
        "share_as_good": float(np.mean(cont >= planted - 0.05 * abs(planted))) if len(trig) > 1 else None,
        "image_planted": image_reach(ctx, trig),
        "image_first_piece": image_reach(ctx, trig[:1]) if len(trig) > 1 else None,
    }


def main(argv=None) -> int:
    from eebguard.judges import get_judge
    from eebguard.models import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--reference", required=True, help="the base the zoo was built from")
    ap.add_argument("--ids", default=None, help="comma-separated model ids (default: every surviving backdoor)")
    ap.add_argument("--continuations", type=int, default=12)
    ap.add_argument("--samples", type=int, default=32, help="objective samples (the scanner uses 8)")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="results file (default experiments/results/trigger_prefix.json)")
    a = ap.parse_args(argv)
    manifest = Path(a.zoo) / "manifest.jsonl"
    entries = zoo_entries(a.zoo, a.ids)
    judge = get_judge("testbed")
    ref = load(a.reference).pipe
    rows, shared, t0 = [], {}, time.perf_counter()
    for e in entries:
        pipe = load(f"{manifest}#{e['id']}").pipe
        rows.append(measure(e, pipe, ref, judge, a.continuations, a.samples, a.images, a.seed, shared))
    cols = ["id", "trigger", "reach_planted", "reach_first_piece", "reach_name", "share_as_good", "image_planted",
            "image_first_piece"]
    print(table(rows, cols))
    by_attack = {}
    for r in rows:
        by_attack.setdefault(r["attack"], []).append(r)
    summary = []
    for k, v in sorted(by_attack.items()):
        ratios = [r["reach_first_piece"] / max(r["reach_planted"], 1e-6) for r in v]
        shares = [r["share_as_good"] for r in v if r["share_as_good"] is not None]
        summary.append({"attack": k, "models": len(v), "first_piece_reach_ratio_median": float(np.median(ratios)),
                        "share_as_good_median": float(np.median(shares)) if shares else float("nan")})
    print()
    print(table(summary, ["attack", "models", "first_piece_reach_ratio_median", "share_as_good_median"]))
    payload = {"zoo": a.zoo, "reference": a.reference, "settings": vars(a),
               "seconds": round(time.perf_counter() - t0, 1), "rows": rows, "summary": summary}
    write("trigger_prefix", payload, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
