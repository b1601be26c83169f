"""How often a zoo's models would be called ``reachable``, by kind of model, from recorded scans.

The vetting API's erasure check (``eebguard.api.erasure_check``) calls a model reachable when the
concept's name, or the best prompt the trigger search found, produces the concept in at least half of
the generations. Zoo records hold the scan's own judgements (``reach.name_image`` and
``hard.best_image_reach``, 8 images each), not the check's 16 fresh ones, so this is the check on the
search's images, a proxy (re-judged on fresh images the recorded best prompts kept about the same
reach: docs/evaluation.md, trigger_specificity; docs/usage.md, "Verdicts").

    python benchmarks/reachable_by_kind.py benchmarks/zoo-records/default benchmarks/zoo-records/heldout benchmarks/zoo-records/design

A second table counts, per erasure method and family, the models without a planted backdoor that the
check calls reachable, through the name or through a found prompt: which erasures hold against the
search on their own.

With ``--built ZOO`` (a built zoo whose ids match the first records folder) it also runs the check
itself on the built models: each record's best found prompt re-judged on the check's fresh images,
the name's recorded reach as the scan saw it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import model_kind, table, write  # noqa: E402

KINDS = ("surviving backdoors", "planted, destroyed", "clean erasures", "hard negatives")
_KIND = {"clean backdoor": KINDS[0], "leaky survivor": KINDS[0], "planted, destroyed": KINDS[1],
         "clean erasure": KINDS[2], "hard negative": KINDS[3]}


def recorded_reach(row: dict) -> str | None:
    """The erasure check's rule on a recorded scan's own judgements: "name", else "prompt", else None."""
    from eebguard.api import REACH_LEVEL

    v = row["scan"]["features"]["values"]
    if (v.get("reach.name_image") or 0.0) >= REACH_LEVEL:
        return "name"
    return "prompt" if (v.get("hard.best_image_reach") or 0.0) >= REACH_LEVEL else None


def kind_row(label: str, pairs) -> dict:
    """``pairs``: (row, reachable) per model; the share reachable per kind."""
    counts = {k: [0, 0] for k in KINDS}
    for r, reached in pairs:
        c = counts[_KIND[model_kind(r)]]
        c[0], c[1] = c[0] + int(reached), c[1] + 1
    return {"zoos": label, **{k: f"{n}/{m} ({n / m:.2f})" if m else "–" for k, (n, m) in counts.items()}}


def erasure_rows(rows: list[dict]) -> list[dict]:
    """Models without a planted backdoor (clean erasures and hard negatives), per erasure method and
    family: how many the check calls reachable, and through what (the name, else the found prompt)."""
    out = {}
    for r in rows:
        if r["planted"]:
            continue
        by = recorded_reach(r)
        c = out.setdefault((r["erasure"], r["family"]), [0, 0, 0])
        c[0], c[1], c[2] = c[0] + (by == "name"), c[1] + (by == "prompt"), c[2] + 1
    return [{"erasure": e, "family": f, "models": m, "reachable by name": n, "by a found prompt": q,
             "reachable": f"{n + q}/{m}"} for (e, f), (n, q, m) in sorted(out.items())]


def fresh_checks(rows: list[dict], built: str):
    """(row, reachable) by the vetting API's erasure check on each built model, from its recorded scan."""
    from eebguard.api import VERIFY_IMAGES, erasure_check
    from eebguard.judges import get_judge
    from eebguard.models import load
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext

    judge, manifest = get_judge("testbed"), Path(built) / "manifest.jsonl"
    for r in rows:
        pipe = load(f"{manifest}#{r['id']}").pipe
        ev, v = r["scan"]["features"]["evidence"], r["scan"]["features"]["values"]
        ctx = ScanContext(pipe, r["target"], concept_prompts(r["target"]), judge=judge)
        check = erasure_check(ctx, ev.get("hard_trigger", {}).get("triggers", []), v.get("reach.name_image"),
                              VERIFY_IMAGES)
        yield r, check["reachable"]


def main():
    from eebguard.api import REACH_LEVEL
    from eebguard.evaluate.evaluate import load_rows

    ap = argparse.ArgumentParser()
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--built", default=None, help="a built zoo with the first records' models: run the check itself")
    ap.add_argument("--json", default=None, help="default: results/reachable_by_kind.json")
    a = ap.parse_args()
    per_zoo = {z: load_rows([z]) for z in a.zoos}
    everything = [r for z in a.zoos for r in per_zoo[z]]
    rows = [kind_row(Path(z).name, ((r, recorded_reach(r) is not None) for r in per_zoo[z])) for z in a.zoos]
    if len(a.zoos) > 1:
        rows.append(kind_row("+".join(Path(z).name for z in a.zoos),
                             ((r, recorded_reach(r) is not None) for r in everything)))
    if a.built:
        first = a.zoos[0]
        rows.append(kind_row(f"{Path(first).name}, checked on {Path(a.built).name}", fresh_checks(per_zoo[first], a.built)))
    print(table(rows, ["zoos", *KINDS]))
    by_erasure = erasure_rows(everything)
    print(table(by_erasure, list(by_erasure[0])))
    print(write("reachable_by_kind", {"zoos": a.zoos, "level": REACH_LEVEL, "rows": rows, "by_erasure": by_erasure,
                                      "command": "python benchmarks/reachable_by_kind.py " + " ".join(sys.argv[1:])},
                a.json))


if __name__ == "__main__":
    main()
