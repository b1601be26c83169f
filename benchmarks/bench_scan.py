"""Time every scanner on testbed models (median of --repeats runs) and how a scan grows with the number
of vocabulary candidates and discrete-search steps.

    python benchmarks/bench_scan.py [--repeats 3]      # per-scanner medians -> results/scan.json
    python benchmarks/bench_scan.py --repeats 0 --grid  # growth with candidates/steps -> results/scan_grid.json

Models: the closed-form shallow backdoor + UCE and the clean UCE erasure of the pytest fixture
(`eeb_tiny_pipelines`), so the benchmark needs no zoo. Prints a table and writes
benchmarks/results/scan.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write  # noqa: E402


def _scan(pipe, base, judge, **settings):
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext, ScanSettings, run_scanners

    ctx = ScanContext(pipe, "seven", concept_prompts("seven"), reference=base, judge=judge,
                      settings=ScanSettings(**settings))
    t0 = time.perf_counter()
    run_scanners(ctx)
    return time.perf_counter() - t0, dict(ctx.timings)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grid", action="store_true", help="also vary n_candidates and search_steps")
    a = ap.parse_args()
    import torch

    from eebguard.evaluate.pytest_plugin import eeb_tiny_pipelines
    from eebguard.judges import get_judge

    torch.set_num_threads(2)
    models = eeb_tiny_pipelines._get_wrapped_function()()
    judge = get_judge("testbed")
    rows, raw = [], {}
    for name in ("backdoored_erased", "clean_erased") if a.repeats > 0 else ():
        runs = [_scan(models[name], models["base"], judge) for _ in range(a.repeats)]
        raw[name] = [{"total": t, **tim} for t, tim in runs]
        row = {"model": name, "total_s": statistics.median(t for t, _ in runs)}
        for k in runs[0][1]:
            row[k] = statistics.median(tim.get(k, 0.0) for _, tim in runs)
        rows.append(row)
    if rows:
        print(table(rows, list(dict.fromkeys(k for r in rows for k in r))))
    grid = []
    if a.grid:
        for n_candidates in (16, 48, 96):
            for search_steps in (2, 6):
                t, tim = _scan(models["backdoored_erased"], models["base"], judge, n_candidates=n_candidates,
                               search_steps=search_steps)
                grid.append({"n_candidates": n_candidates, "search_steps": search_steps, "total_s": t,
                             "hard_trigger_s": tim.get("hard_trigger", 0.0)})
        print(table(grid, list(grid[0])))
    name = "scan" if rows else "scan_grid"  # a grid-only run (--repeats 0) keeps the per-scanner record
    print(write(name, {"repeats": a.repeats, "per_scanner_median_s": rows, "runs": raw, "grid": grid}))


if __name__ == "__main__":
    main()
