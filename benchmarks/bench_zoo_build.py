"""Zoo-building cost per attack and erasure method, from the timings every manifest entry records.

    python benchmarks/bench_zoo_build.py zoos/default [zoos/heldout-closed-form ...]

Prints medians (seconds) of attack preparation, erasure and measurement per attack and per erasure
method, and an estimate of the whole spec's wall time; writes benchmarks/results/zoo_build.json.
The numbers are only comparable between zoos built on the same machine under the same load (the
manifest does not know what else ran beside the build).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo", nargs="+")
    a = ap.parse_args()
    by_erasure, by_attack, total = defaultdict(list), defaultdict(list), []
    for z in a.zoo:
        for line in (Path(z) / "manifest.jsonl").read_text().splitlines():
            if not line.strip():
                continue
            e = json.loads(line)
            s = e["seconds"]
            by_erasure[e["erasure"]].append((s["erasure"], s["measure"]))
            by_attack[e["attack"] if not e.get("hard_negative") else f"hn:{e['hard_negative']}"].append(s["attack"])
            total.append(s["erasure"] + s["measure"])
    rows = [{"erasure": k, "models": len(v), "erasure_s_median": statistics.median(x for x, _ in v),
             "measure_s_median": statistics.median(y for _, y in v)} for k, v in sorted(by_erasure.items())]
    print(table(rows, list(rows[0])))
    arows = [{"attack": k, "models": len(v), "prepare_s_median": statistics.median(v)} for k, v in sorted(by_attack.items())]
    print(table(arows, list(arows[0])))
    print(write("zoo_build", {"zoos": a.zoo, "per_erasure": rows, "per_attack": arows,
                              "models": len(total), "erase_plus_measure_s_sum": sum(total)}))


if __name__ == "__main__":
    main()
