"""Which pieces of a planted trigger do the recorded scans name? Exact recovery aside, a piece.

Reads recorded scans only (no model is scanned). (1) The text encoder: for every model whose text encoder was
fine-tuned to bind a word, the surface-attacked models (trigger bound to the target) and the surface
hard negatives (a made-up word bound to *another* concept), the rank of each of the word's BPE pieces in
the scan's `top_te_approach` list (the vocabulary tokens whose suspect encoding moved furthest toward the
target's reference encoding, top 10 recorded) and the list's top score; the unattacked erased models of
the same zoos give the top score's control level. (2) The trigger search: for every surviving backdoor
(planted, label 1), whether the search's best trigger (and any of its top 3) holds a piece of the
planted one, whether that best trigger fires (image reach >= 0.5), and whether it is the planted one.

    python experiments/trigger_key_piece.py experiments/zoo-records/default experiments/zoo-records/heldout \\
        experiments/zoo-records/design experiments/zoo-records/replay-check experiments/zoo-records/fifth-check
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from eebguard.lab.tables import table, write


def _rows(record: Path) -> list[tuple[dict, dict]]:
    from eebguard.lab.zoo.build import read_jsonl

    manifest = {e["id"]: e for e in read_jsonl(record / "manifest.jsonl")}
    return [(manifest[s["id"]], s["features"]) for s in read_jsonl(record / "features.jsonl") if s["id"] in manifest]


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
    ap.add_argument("--json", default=None, help="output path (default experiments/results/trigger_key_piece.json)")
    a = ap.parse_args(argv)
    from eebguard.testbed.tokenizer import load_tokenizer

    tok = load_tokenizer()
    def pieces_of(word):
        return tok.convert_ids_to_tokens(tok(word, add_special_tokens=False).input_ids) if word else []

    rows, searched = [], []
    for rec in map(Path, a.records):
        for entry, feats in _rows(rec):
            if entry.get("planted") and entry.get("label") == 1:
                planted = pieces_of(entry["trigger"])
                found = feats["evidence"].get("hard_trigger", {}).get("triggers", [])
                best = found[0] if found else {}
                searched.append({"zoo": rec.name, "id": entry["id"], "attack": entry["attack"],
                                 "planted": " ".join(planted), "found": " ".join(best.get("tokens") or []),
                                 "best_holds_piece": bool(set(best.get("tokens") or []) & set(planted)),
                                 "top3_hold_piece": any(set(t.get("tokens") or []) & set(planted) for t in found[:3]),
                                 "best_fires": (best.get("image_reach") or 0.0) >= 0.5,
                                 "exact": (best.get("tokens") or None) == planted})
            kind = _kind(entry)
            if kind is None:
                continue
            top = feats["evidence"].get("text_embedding", {}).get("top_te_approach", [])
            listed = [t["token"] for t in top]
            word = (entry.get("hard_negative_spec") or {}).get("word") or entry.get("trigger")
            pieces = pieces_of(word)
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
    search = []
    for attack in ("surface", "shallow", "deep", "data"):
        rs = [r for r in searched if r["attack"] == attack]
        if rs:
            search.append({"attack": attack, "survivors": len(rs),
                           "best_holds_piece": sum(r["best_holds_piece"] for r in rs),
                           "best_holds_piece_and_fires": sum(r["best_holds_piece"] and r["best_fires"] for r in rs),
                           "top3_hold_piece": sum(r["top3_hold_piece"] for r in rs),
                           "exact": sum(r["exact"] for r in rs)})
    print("(1) text encoder: the approach screen's top tokens")
    print(table(summary, list(summary[0])))
    print()
    print(table(words, list(words[0])))
    print()
    print("(2) trigger search: the recorded best trigger against the planted one, surviving backdoors")
    print(table(search, list(search[0])))
    print(write("trigger_key_piece", {"records": a.records, "summary": summary, "words": words, "rows": rows,
                                      "search": search, "searched": searched}, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
