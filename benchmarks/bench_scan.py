"""Time every scanner on testbed models (median of --repeats runs) and how a scan grows with the number
of vocabulary candidates and discrete-search steps.

    python benchmarks/bench_scan.py [--repeats 3]      # per-scanner medians -> results/scan.json
    python benchmarks/bench_scan.py --repeats 0 --grid  # growth with candidates/steps -> results/scan_grid.json
    python benchmarks/bench_scan.py --claimed-erasure uce --json benchmarks/results/scan_replay.json
        # with the claimed erasure replayed in every scan (the replay scanner and the check's replay)
    python benchmarks/bench_scan.py --reference-free --json benchmarks/results/scan_reference_free.json
        # scans without a reference (the soft-trigger search judge-driven, no discrete search)

The grid varies one setting at a time from the defaults (``n_candidates``: tokens kept from the vocabulary
screen and seeding the discrete search; ``search_steps``: its greedy-coordinate rounds; ``soft_steps``:
the soft-trigger optimiser's steps), each cell the median of ``--grid-repeats`` scans of the backdoored
model, with the ratio to the default cell measured in the same run.

Models: the closed-form shallow backdoor + UCE and the clean UCE erasure of the pytest fixture
(`eeb_tiny_pipelines`), so the benchmark needs no zoo. Prints a table and writes
benchmarks/results/scan.json.
"""
from __future__ import annotations

import argparse
import statistics
import time

from eebguard.lab.tables import table, write


def _scan(pipe, base, judge, claimed_erasure=None, shared=None, **settings):
    """One scan as the vetting API runs it (``Scanner.scan``: counterfactual, contrastive scanners,
    demonstration); the counterfactual's one-time cost is reported apart (``counterfactual``), since a
    ``Scanner`` builds it once per concept and method. ``shared``: the reference-side cache kept across
    the repeats, as a Scanner keeps it across models."""
    from eebguard.api import Scanner
    from eebguard.scanners import ScanSettings

    scanner = Scanner(base, judge=judge, settings=ScanSettings(**settings))
    if shared is not None:
        scanner.shared = shared
    t0 = time.perf_counter()
    res = scanner.scan(pipe, "seven", claimed_erasure=claimed_erasure)
    total = time.perf_counter() - t0
    timings = {k.removeprefix("scanner."): v for k, v in res.timings.items() if k.startswith("scanner.")}
    timings.update({k: res.timings.get(k, 0.0) for k in ("counterfactual", "demonstration")})
    return total - res.timings.get("counterfactual", 0.0), timings


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grid", action="store_true", help="also vary n_candidates, search_steps and soft_steps")
    ap.add_argument("--grid-repeats", type=int, default=3, help="scans per grid cell (median)")
    ap.add_argument("--claimed-erasure", default=None,
                    help="replay this erasure on the reference in every scan (the fixtures were erased with uce)")
    ap.add_argument("--reference-free", action="store_true", help="scan without the reference (no --grid)")
    ap.add_argument("--json", default=None, help="results file (default benchmarks/results/scan.json)")
    a = ap.parse_args()
    if a.reference_free and (a.grid or a.claimed_erasure):
        ap.error("--reference-free goes without --grid and --claimed-erasure (both need the reference)")
    import torch

    from eebguard.lab.pytest_plugin import eeb_tiny_pipelines
    from eebguard.judges import get_judge

    torch.set_num_threads(2)
    models = eeb_tiny_pipelines._get_wrapped_function()()
    judge = get_judge("testbed")
    rows, raw = [], {}
    for name in ("backdoored_erased", "clean_erased") if a.repeats > 0 else ():
        reference = None if a.reference_free else models["base"]
        # as a Scanner runs many models: one reference-side cache (vocabulary encodings, objective samples,
        # the counterfactual) kept across scans; the first, cold scan is the one-time cost, reported apart
        shared: dict = {}
        cold, cold_tim = _scan(models[name], reference, judge, a.claimed_erasure, shared=shared)
        runs = [_scan(models[name], reference, judge, a.claimed_erasure, shared=shared) for _ in range(a.repeats)]
        raw[name] = [{"total": t, **tim} for t, tim in runs]
        row = {"model": name, "total_s": statistics.median(t for t, _ in runs),
               "cold_s": cold + cold_tim.get("counterfactual", 0.0), "counterfactual_once_s": cold_tim.get("counterfactual", 0.0)}
        for k in runs[0][1]:
            if k != "counterfactual":  # ~0 once built: its cost is the cold scan's
                row[k] = statistics.median(tim.get(k, 0.0) for _, tim in runs)
        rows.append(row)
    if rows:
        print(table(rows, list(dict.fromkeys(k for r in rows for k in r))))
    grid = []
    if a.grid:
        from eebguard.scanners import ScanSettings

        d = ScanSettings()
        cells = [{}] + [{k: v} for k, vals in (("n_candidates", (16, 96)), ("search_steps", (1, 6)),
                                                ("soft_steps", (10, 60))) for v in vals]
        for cell in cells:
            runs = [_scan(models["backdoored_erased"], models["base"], judge, **cell) for _ in range(a.grid_repeats)]
            grid.append({"n_candidates": cell.get("n_candidates", d.n_candidates),
                         "search_steps": cell.get("search_steps", d.search_steps),
                         "soft_steps": cell.get("soft_steps", d.soft_steps),
                         "total_s": statistics.median(t for t, _ in runs),
                         "hard_trigger_s": statistics.median(tim.get("hard_trigger", 0.0) for _, tim in runs),
                         "soft_trigger_s": statistics.median(tim.get("soft_trigger", 0.0) for _, tim in runs),
                         "runs": len(runs)})
        for g in grid:  # ratios against the default cell of the same run
            for k in ("total_s", "hard_trigger_s", "soft_trigger_s"):
                g[k.removesuffix("_s") + "_ratio"] = g[k] / grid[0][k] if grid[0][k] else float("nan")
        print(table(grid, list(grid[0])))
    name = "scan" if rows else "scan_grid"  # a grid-only run (--repeats 0) keeps the per-scanner record
    print(write(name, {"repeats": a.repeats, "claimed_erasure": a.claimed_erasure, "reference_free": a.reference_free,
                       "per_scanner_median_s": rows,
                       "runs": raw, "grid": grid}, a.json))


if __name__ == "__main__":
    main()
