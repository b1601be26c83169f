"""Why does the scan not return the planted trigger's exact tokens? Search miss or objective ambiguity,
per surviving backdoor (the exact-recovery rows of docs/scanners.md).

For every surviving backdoor of a zoo (planted, label 1) or the models named by ``--ids``, on one
batch of ``--samples`` objective samples (the hard-trigger search's own score objective; the scan uses 8):

- the score reach of every contiguous sub-sequence of the planted trigger's BPE pieces (``wu``,
  ``wu bre``, ``bre l</w>`` ...) and of the best trigger the zoo's recorded scan returned;
- ``specific``: the planted sequence beats every proper sub-sequence by more than ``--margin`` (relative):
  only then is the exact sequence what the objective singles out among its own parts;
- ``search_miss``: the planted sequence reaches at least as far as the recovered one (the objective
  prefers it; the search did not get there) rather than ``objective_prefers_other``;
- ``gradient_rank``: each planted piece's rank among the whole vocabulary under the first-order swap
  score at its own position, the rest of the planted sequence in place (what GCG proposals use; the
  scan takes the top 8 per position). Uniform ranks mean the gradient proposals cannot reach it.
- ``kv_next_rank``: each planted piece after the first, ranked among the whole vocabulary by the K/V
  screen with the planted pieces before it in the slot (``kv_screen(ctx, prefix)``, the
  ``cross_attention_kv`` scanner's score): how far a screen conditioned on a correct
  partial trigger gets to the next piece;
- the judged image reach (``--images`` generations) of the planted and the recovered trigger;
- on the first model, the cost of the alternative to gradient proposals: ``--timing`` random next pieces
  after the planted first piece scored with 2 objective samples, extrapolated to the whole vocabulary
  (seconds per position of a full-vocabulary extension screen).

    python experiments/trigger_identifiability.py ZOO [--record DIR] [--ids ID,ID] [--json PATH]

``--record`` is the folder with the zoo's recorded scan (``features.jsonl``; default the zoo itself).
Writes experiments/results/trigger_identifiability.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from eebguard.lab.tables import table, write, zoo_entries


def subsequences(ids: list[int]) -> list[list[int]]:
    return [ids[i:j] for i in range(len(ids)) for j in range(i + 1, len(ids) + 1)]


def measure(entry: dict, recovered: list[int] | None, pipe, ref, judge, a, shared: dict) -> dict:
    from eebguard.probes.templates import concept_prompts
    from eebguard.scanners.context import ScanContext
    from eebguard.scanners.settings import ScanSettings
    from eebguard.scanners.cross_attention import kv_screen
    from eebguard.scanners.hard_trigger import gradient_deltas, image_reach
    from eebguard.scanners.vocab import vocabulary

    s = ScanSettings(objective_samples=a.samples, image_samples=a.images, seed=a.seed)
    ctx = ScanContext(pipe, entry["target"], concept_prompts(entry["target"]), reference=ref, judge=judge,
                      settings=s, shared=shared)
    tok = pipe.tokenizer
    planted = tok(entry["trigger"], add_special_tokens=False).input_ids
    subs = subsequences(planted)
    reach = ctx.objective().reach_slots(subs + ([recovered] if recovered else []))
    by_sub = {" ".join(tok.convert_ids_to_tokens(q)): float(r) for q, r in zip(subs, reach)}
    full = by_sub[" ".join(tok.convert_ids_to_tokens(planted))]
    parts = [v for q, v in zip(subs, reach) if len(q) < len(planted)]
    rec_reach = float(reach[-1]) if recovered else None
    delta = gradient_deltas(ctx, tuple(planted))
    ranks = [int((delta[p] < delta[p, t]).sum()) for p, t in enumerate(planted)]
    vocab, next_ranks = vocabulary(ctx), []
    for k in range(1, len(planted)):
        score = kv_screen(ctx, tuple(planted[:k]))[0]
        next_ranks.append(int((score > score[int(np.flatnonzero(vocab == planted[k])[0])]).sum()))
    return {
        "id": entry["id"], "attack": entry["attack"], "erasure": entry.get("erasure"), "trigger": entry["trigger"],
        "pieces": tok.convert_ids_to_tokens(planted), "reach_planted": full, "reach_subsequences": by_sub,
        "best_part_reach": max(parts) if parts else None,
        "specific": bool(not parts or full > max(parts) + a.margin * abs(full)),
        "recovered": " ".join(tok.convert_ids_to_tokens(recovered)) if recovered else None,
        "reach_recovered": rec_reach,
        "search_miss": bool(rec_reach is not None and full >= rec_reach),
        "gradient_rank": ranks, "vocabulary": int(delta.shape[1]), "kv_next_rank": next_ranks,
        "image_planted": image_reach(ctx, planted),
        "image_recovered": image_reach(ctx, recovered) if recovered else None,
    }


def extension_screen_seconds(entry: dict, pipe, ref, n: int, seed: int, shared: dict) -> dict:
    """Seconds to score every vocabulary token as the next piece with 2 objective samples (from ``n``)."""
    from eebguard.probes.templates import concept_prompts
    from eebguard.scanners.context import ScanContext
    from eebguard.scanners.settings import ScanSettings

    ctx = ScanContext(pipe, entry["target"], concept_prompts(entry["target"]), reference=ref,
                      settings=ScanSettings(objective_samples=2, seed=seed), shared=shared)
    first = pipe.tokenizer(entry["trigger"], add_special_tokens=False).input_ids[:1]
    vocab = pipe.text_encoder.get_input_embeddings().weight.shape[0]
    nxt = np.random.default_rng(seed).integers(0, vocab, n)
    obj = ctx.objective()
    t0 = time.perf_counter()
    obj.reach_slots([first + [int(v)] for v in nxt])
    per = (time.perf_counter() - t0) / n
    return {"model": entry["id"], "sequences_timed": n, "seconds_per_sequence": per,
            "seconds_per_position": per * vocab}


def main(argv=None) -> int:
    from eebguard.judges import get_judge
    from eebguard.models import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--record", default=None, help="folder holding the zoo's recorded features.jsonl")
    ap.add_argument("--reference", default="testbed", help="the base the zoo was built from")
    ap.add_argument("--ids", default=None, help="comma-separated model ids (default: every surviving backdoor)")
    ap.add_argument("--samples", type=int, default=32, help="objective samples (the scanner uses 8)")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--margin", type=float, default=0.05, help="relative margin for 'specific'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timing", type=int, default=1024, help="sequences timed for the extension-screen cost (0: skip)")
    ap.add_argument("--json", default=None, help="results file (default experiments/results/trigger_identifiability.json)")
    a = ap.parse_args(argv)
    manifest = Path(a.zoo) / "manifest.jsonl"
    entries = zoo_entries(a.zoo, a.ids)
    record = Path(a.record or a.zoo) / "features.jsonl"
    triggers = {}
    for line in record.read_text().splitlines():
        row = json.loads(line)
        found = row["features"]["evidence"].get("hard_trigger", {}).get("triggers") or []
        triggers[row["id"]] = found[0]["ids"] if found else None
    judge = get_judge("testbed")
    ref = load(a.reference).pipe
    rows, shared, t0, timing = [], {}, time.perf_counter(), None
    for e in entries:
        pipe = load(f"{manifest}#{e['id']}").pipe
        rows.append(measure(e, triggers.get(e["id"]), pipe, ref, judge, a, shared))
        if timing is None and a.timing:
            timing = extension_screen_seconds(e, pipe, ref, a.timing, a.seed, {})
    cols = ["id", "trigger", "reach_planted", "best_part_reach", "specific", "recovered", "reach_recovered",
            "search_miss", "gradient_rank", "kv_next_rank", "image_planted", "image_recovered"]
    print(table(rows, cols))
    summary = []
    for attack in sorted({r["attack"] for r in rows}):
        v = [r for r in rows if r["attack"] == attack]
        ranks = [k / r["vocabulary"] for r in v for k in r["gradient_rank"]]
        summary.append({"attack": attack, "models": len(v), "specific": sum(r["specific"] for r in v),
                        "search_miss": sum(r["search_miss"] for r in v),
                        "specific_and_search_miss": sum(r["specific"] and r["search_miss"] for r in v),
                        "gradient_rank_quantile_median": float(np.median(ranks)),
                        "kv_next_piece_top3": sum(k < 3 for r in v for k in r["kv_next_rank"]),
                        "next_pieces": sum(len(r["kv_next_rank"]) for r in v)})
    print()
    print(table(summary, list(summary[0])))
    if timing:
        print(f"\nfull-vocabulary extension screen (2 objective samples): {timing['seconds_per_position']:.0f} s "
              f"per position ({timing['seconds_per_sequence'] * 1e3:.2f} ms per sequence, {timing['model']})")
    payload = {"zoo": a.zoo, "record": str(record), "settings": vars(a), "extension_screen": timing,
               "seconds": round(time.perf_counter() - t0, 1), "rows": rows, "summary": summary}
    print(write("trigger_identifiability", payload, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
