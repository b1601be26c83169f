"""Does the text-embedding scanner name a surface backdoor's trigger, even where the erasure killed it?

Reads recorded scans only (no model is loaded or scanned): for every model whose text encoder was
fine-tuned to bind a word, the surface-attacked models (trigger bound to the target) and the surface
hard negatives (a made-up word bound to *another* concept), the rank of each of the word's BPE pieces in
the scan's `top_te_approach` list (the vocabulary tokens whose suspect encoding moved furthest toward the
target's reference encoding, top 10 recorded) and the list's top score; the unattacked erased models of
the same zoos give the top score's control level.

    python benchmarks/surface_key_piece.py benchmarks/zoo-records/default benchmarks/zoo-records/heldout \\
        benchmarks/zoo-records/design benchmarks/zoo-records/fifth-check
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write  # noqa: E402


def _rows(record: Path) -> list[tuple[dict, dict]]:
    manifest = {e["id"]: e for e in map(json.loads, (record / "manifest.jsonl").read_text().splitlines())}
    scans = [json.loads(line) for line in (record / "features.jsonl").read_text().splitlines() if line.strip()]
    return [(manifest[s["id"]], s["features"]) for s in scans if s["id"] in manifest]


def _kind(entry: dict) -> str | None:
    spec = entry.get("hard_negative_spec") or {}
    if entry["attack"] == "surface":
        return "surface"
    if spec.get("kind") == "benign_binding" and spec.get("via") == "surface":
        return "surface hard negative"
    if entry["attack"] == "none" and not entry.get("hard_negative") and entry.get("erasure"):
        return "clean erasure"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", help="zoo record folders (manifest.jsonl + features.jsonl)")
    ap.add_argument("--json", default=None, help="output path (default benchmarks/results/surface_key_piece.json)")
    a = ap.parse_args(argv)
    from eebguard.models import load

    tok = load("testbed").pipe.tokenizer
    rows = []
    for rec in map(Path, a.records):
        for entry, feats in _rows(rec):
            kind = _kind(entry)
            if kind is None:
                continue
            top = feats["evidence"].get("text_embedding", {}).get("top_te_approach", [])
            listed = [t["token"] for t in top]
            word = (entry.get("hard_negative_spec") or {}).get("word") or entry.get("trigger")
            pieces = tok.convert_ids_to_tokens(tok(word, add_special_tokens=False).input_ids) if word else []
            ranks = [listed.index(p) if p in listed else None for p in pieces]
            rows.append({"zoo": rec.name, "id": entry["id"], "kind": kind, "erasure": entry.get("erasure"),
                         "label": entry.get("label"), "word": word, "pieces": " ".join(pieces),
                         "piece_ranks": ranks, "first_piece_rank": ranks[0] if ranks else None,
                         "top1": listed[0] if listed else None, "top1_score": top[0]["score"] if top else None,
                         "pieces_in_top10": sum(r is not None for r in ranks), "n_pieces": len(pieces)})
    summary = []
    for kind in ("surface", "surface hard negative", "clean erasure"):
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        s = {"kind": kind, "models": len(rs), "top1_score_median": statistics.median(r["top1_score"] for r in rs)}
        if kind != "clean erasure":
            s.update({"top1_is_a_piece": sum(r["top1"] in r["pieces"].split() for r in rs),
                      "first_piece_top1": sum(r["first_piece_rank"] == 0 for r in rs),
                      "first_piece_top10": sum(r["first_piece_rank"] is not None for r in rs),
                      "all_pieces_top10": sum(r["pieces_in_top10"] == r["n_pieces"] for r in rs)})
        summary.append(s)
    by_word = {}
    for r in rows:
        if r["kind"] != "clean erasure":
            by_word.setdefault((r["zoo"], r["kind"], r["word"], r["pieces"]), []).append(r)
    words = [{"zoo": z, "kind": k, "word": w, "pieces": p, "models": len(rs),
              "ranks (erasure: piece ranks)": "; ".join(f"{r['erasure']}: {r['piece_ranks']}" for r in rs),
              "top1_score": round(statistics.median(r["top1_score"] for r in rs), 3)}
             for (z, k, w, p), rs in by_word.items()]
    print(table(summary, list(summary[0])))
    print()
    print(table(words, list(words[0])))
    print(write("surface_key_piece", {"records": a.records, "summary": summary, "words": words, "rows": rows}, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
