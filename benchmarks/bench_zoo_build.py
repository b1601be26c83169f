"""Zoo-building cost per attack and erasure method, from the timings every manifest entry records.

    python benchmarks/bench_zoo_build.py zoos/default [zoos/heldout-closed-form ...]
    python benchmarks/bench_zoo_build.py --build default --out zoos/default   # build fresh, timed

With ``--build SPEC`` the zoo is built from scratch into ``--out`` (which must not hold a manifest yet)
and the wall time of the whole build is recorded next to the per-method medians (target: the default
spec in 90 minutes on 2 cores, with nothing else running).

Prints medians (seconds) of attack preparation, erasure and measurement per attack and per erasure
method, and an estimate of the whole spec's wall time; writes benchmarks/results/zoo_build.json.
The numbers are only comparable between zoos built on the same machine under the same load (the
manifest does not know what else ran beside the build).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write  # noqa: E402

from eebguard.zoo.build import read_jsonl  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo", nargs="*")
    ap.add_argument("--build", default=None, help="build this spec from scratch first, timed")
    ap.add_argument("--out", default=None, help="where --build writes the zoo")
    a = ap.parse_args()
    built = None
    if a.build:
        import time

        from eebguard.zoo.build import build_zoo

        if not a.out or (Path(a.out) / "manifest.jsonl").exists():
            raise SystemExit("--build needs --out pointing to a folder without a manifest (a fresh build)")
        t0 = time.perf_counter()
        summary = build_zoo(a.build, a.out, progress=True)
        built = {"spec": a.build, "wall_s": round(time.perf_counter() - t0, 1), "summary": summary}
        print(f"built {a.build} in {built['wall_s'] / 60:.1f} min")
        a.zoo = [a.out]
    if not a.zoo:
        raise SystemExit("give zoo folders, or --build SPEC --out DIR")
    by_erasure, by_attack, total = defaultdict(list), defaultdict(list), []
    for z in a.zoo:
        for e in read_jsonl(Path(z) / "manifest.jsonl"):
            s = e["seconds"]
            by_erasure[e["erasure"]].append((s["erasure"], s["measure"]))
            by_attack[e["attack"] if not e.get("hard_negative") else f"hn:{e['hard_negative']}"].append(s["attack"])
            total.append(s["erasure"] + s["measure"])
    rows = [{"erasure": k, "models": len(v), "erasure_s_median": statistics.median(x for x, _ in v),
             "measure_s_median": statistics.median(y for _, y in v)} for k, v in sorted(by_erasure.items())]
    print(table(rows, list(rows[0])))
    arows = [{"attack": k, "models": len(v), "prepare_s_median": statistics.median(v)} for k, v in sorted(by_attack.items())]
    print(table(arows, list(arows[0])))
    print(write("zoo_build" if built is None else f"zoo_build_{Path(a.build).stem}",
                {"zoos": a.zoo, "per_erasure": rows, "per_attack": arows, "models": len(total),
                 "erase_plus_measure_s_sum": sum(total), "build": built,
                 "command": "python benchmarks/bench_zoo_build.py " + " ".join(sys.argv[1:])}))


if __name__ == "__main__":
    main()
