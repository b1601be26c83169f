"""The runner that chains the registered scanners into one Features record."""
from __future__ import annotations

import time

from eebguard.features import Features
from eebguard.scanners.base import SCANNERS
from eebguard.scanners.context import ScanContext


def run_scanners(ctx: ScanContext, names: list[str] | None = None, progress=None) -> Features:
    """Run the selected scanners (default: all) in their declared order; collect features and evidence.

    ``progress``: optional callable ``(scanner_name, index, total)`` for progress reporting.
    """
    chosen = [SCANNERS.get(n)() for n in (names or SCANNERS.names())]
    chosen.sort(key=lambda s: s.order)
    feats = Features()
    status = {}
    for i, sc in enumerate(chosen):
        if progress:
            progress(sc.name, i, len(chosen))
        why = sc.can_run(ctx)
        if why:
            status[sc.name] = {"status": "skipped", "reason": why}
            continue
        t0 = time.perf_counter()
        try:
            r = sc.scan(ctx)
        except (RuntimeError, ValueError, IndexError, KeyError, FloatingPointError) as exc:
            # one scanner failing on a hostile or odd model must not lose the other scanners' features
            status[sc.name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:300],
                               "seconds": round(time.perf_counter() - t0, 3)}
            continue
        feats.values.update({k: float(v) for k, v in r.features.items() if v is not None})
        if r.evidence:
            feats.evidence[sc.name] = r.evidence
        status[sc.name] = {"status": "skipped" if r.skipped else "ok", "seconds": round(time.perf_counter() - t0, 3),
                           **({"reason": r.skipped} if r.skipped else {})}
    feats.evidence["scanners"] = status
    return feats
