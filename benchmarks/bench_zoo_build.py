"""Zoo-building cost per attack and erasure method, from the timings every manifest entry records.

    python benchmarks/bench_zoo_build.py zoos/default [zoos/heldout-closed-form ...]
    python benchmarks/bench_zoo_build.py --build default --out zoos/default   # build fresh, timed
    python benchmarks/bench_zoo_build.py zoos/default --against experiments/zoo-records/default

``--against RECORDS`` compares every model's measurements (rates, label, pre-erasure rates, number of
changed tensors) with a recorded manifest of the same spec: how many a rebuild reproduced exactly.

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

from eebguard.lab.tables import table, write

from eebguard.lab.zoo.build import read_jsonl  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo", nargs="*")
    ap.add_argument("--build", default=None, help="build this spec from scratch first, timed")
    ap.add_argument("--out", default=None, help="where --build writes the zoo")
    ap.add_argument("--against", default=None, help="a recorded zoo (manifest) of the same spec to compare with")
    a = ap.parse_args()
    built = None
    if a.build:
        import time

        from eebguard.lab.zoo.build import build_zoo

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
    reproduced = compare(a.zoo[0], a.against) if a.against else None
    print(write("zoo_build" if built is None else f"zoo_build_{Path(a.build).stem}",
                {"zoos": a.zoo, "per_erasure": rows, "per_attack": arows, "models": len(total),
                 "erase_plus_measure_s_sum": sum(total), "build": built, "reproduced": reproduced,
                 "command": "python benchmarks/bench_zoo_build.py " + " ".join(sys.argv[1:])}))


MEASURED = ("name_accuracy", "trigger_asr", "other_accuracy", "label", "planted", "changed_parameters", "pre_erasure")


def compare(zoo: str, records: str) -> dict:
    """Which models of ``zoo`` measured exactly as the recorded manifest says, and how the others differ."""
    old = {e["id"]: e for e in read_jsonl(Path(records) / "manifest.jsonl")}
    new = {e["id"]: e for e in read_jsonl(Path(zoo) / "manifest.jsonl")}
    differ = {i: {k: [old[i].get(k), new[i].get(k)] for k in MEASURED if old[i].get(k) != new[i].get(k)}
              for i in sorted(old.keys() & new.keys())}
    differ = {i: d for i, d in differ.items() if d}
    out = {"records": records, "identical": len(old.keys() & new.keys()) - len(differ), "differ": differ,
           "labels_differ": sorted(i for i, d in differ.items() if "label" in d),
           "only_recorded": sorted(old.keys() - new.keys()), "only_built": sorted(new.keys() - old.keys())}
    print(f"against {records}: {out['identical']} identical, {len(differ)} differ "
          f"({len(out['labels_differ'])} in label)")
    for i, d in differ.items():
        print(f"  {i}: " + ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in d.items()))
    return out


if __name__ == "__main__":
    main()
