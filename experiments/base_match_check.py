"""``--reference auto`` on built zoos: is every model attributed to the base it was built on?

    python experiments/base_match_check.py ZOO [ZOO ...] [--json results/base_match.json]

Candidates: the shipped testbed (every zoo model's true base) and a second base of the same shape, the
untrained testbed (the trained one's initialisation: the hardest wrong base there is, related to the
true one). Prints per model kind how many were attributed right and the closest margins, writes JSON.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from eebguard.lab.tables import table, write


def main():
    from eebguard.models import load
    from eebguard.models.base_match import choose_base
    from eebguard.lab.testbed.build import build_pipeline, save_pipeline
    from eebguard.lab.zoo.build import read_jsonl

    ap = argparse.ArgumentParser()
    ap.add_argument("zoo", nargs="+")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        other = str(save_pipeline(build_pipeline(0), Path(tmp) / "untrained", fp16=False))
        cands = {"testbed": load("testbed").pipe, "untrained-testbed": load(other).pipe}
        rows = []
        for z in map(Path, a.zoo):
            for e in read_jsonl(z / "manifest.jsonl"):
                sus = load(f"{z / 'manifest.jsonl'}#{e['id']}").pipe
                name, _, ev = choose_base(sus, [(n, lambda n=n: cands[n]) for n in cands])
                rows.append({"id": e["id"], "attack": e.get("attack"), "chosen": name,
                             "identical": ev["chosen"]["identical"] if ev["chosen"] else None,
                             "distance": ev["chosen"]["distance"] if ev["chosen"] else None,
                             "runner_up_identical": (ev["runner_up"] or {}).get("identical"),
                             "runner_up_distance": (ev["runner_up"] or {}).get("distance")})
    by = defaultdict(list)
    for r in rows:
        by[r["attack"]].append(r)
    kinds = [{"attack": k, "models": len(v), "right": sum(r["chosen"] == "testbed" for r in v),
              "min_identical": min((r["identical"] or 0) for r in v), "max_distance": max((r["distance"] or 0) for r in v),
              "min_runner_up_distance": min((r["runner_up_distance"] or 0) for r in v)} for k, v in sorted(by.items())]
    print(table(kinds, ["attack", "models", "right", "min_identical", "max_distance", "min_runner_up_distance"]))
    right = sum(r["chosen"] == "testbed" for r in rows)
    print(f"attributed to the testbed: {right}/{len(rows)}")
    print(write("base_match", {"zoos": a.zoo, "right": right, "models": len(rows), "by_attack": kinds, "rows": rows,
                               "command": "python experiments/base_match_check.py " + " ".join(sys.argv[1:])}, a.json))


if __name__ == "__main__":
    main()
