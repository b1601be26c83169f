"""Scan every model of a zoo once and cache its features (``features.jsonl``; scanned without a reference,
``features-noref.jsonl``), so fitting and evaluating detectors never rescans. Appended and fsynced per
model; an interrupted run resumes. ``rescan`` replaces chosen models' rows after a scanner change (each
replacement is an atomic rewrite of the file). One feature schema at a time: a record of another
version is rescanned, never upgraded."""
from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from eebguard.features import SCHEMA_VERSION
from eebguard.lab.zoo.build import FEATURES, FEATURES_REFERENCE_FREE, append_jsonl, read_jsonl, write_jsonl

FEATURES_NO_CLAIM = "features-noclaim.jsonl"  # scans whose counterfactual the scan picked itself


def features_file(reference_free: bool = False) -> str:
    """The zoo file holding scans with a reference (the default) or without one."""
    return FEATURES_REFERENCE_FREE if reference_free else FEATURES


def scan_zoo(zoo_dir, *, reference="testbed", judge=None, settings=None, progress: bool = True,
             limit: int | None = None, ids: list[str] | None = None, rescan: bool = False,
             claim: bool = True, replay_trained: bool = False) -> dict:
    """Scan a zoo's models with the vetting ``Scanner`` (counterfactual, contrastive searches,
    demonstration) and cache one row per model: its features and the scan's answers (verdict, p_live,
    p_tampered, counterfactual, demonstrated triggers). ``reference``: the base to compare with, or None
    (or "none") for a reference-free scan, cached in its own file (``features-noref.jsonl``).
    ``claim``: replay each entry's recorded ``erasure`` (False: the scan picks the counterfactual, cached
    in ``features-noclaim.jsonl``). ``ids``: only these models (unknown ids are a ``KeyError``);
    ``rescan``: scan them even if already scanned and replace their rows in place."""
    from eebguard.api import Scanner, _finite
    from eebguard.models import load_manifest
    from eebguard.models.manifest import claimed_also_erased
    from eebguard.scanners import ScanSettings

    zoo_dir = Path(zoo_dir)
    manifest = zoo_dir / "manifest.jsonl"
    reference_free = reference is None or str(reference).lower() == "none"
    out = zoo_dir / (features_file(reference_free) if claim or reference_free else FEATURES_NO_CLAIM)
    done = {r["id"] for r in read_jsonl(out)}
    entries = load_manifest(manifest)
    if ids is not None:
        wanted = set(ids)
        unknown = sorted(wanted - {e["id"] for e in entries})
        if unknown:
            raise KeyError(f"not in {manifest}: {', '.join(unknown)}")
        entries = [e for e in entries if e["id"] in wanted]
    entries = [e for e in entries if rescan or e["id"] not in done][: limit]
    scanner = Scanner(None if reference_free else reference, judge=judge or "testbed",
                      settings=settings or ScanSettings(), replay_trained=replay_trained)
    t_all = time.perf_counter()
    for e in tqdm(entries, desc=f"scan {zoo_dir.name}", disable=not progress):
        t0 = time.perf_counter()
        claimed = claimed_erasure(e) if claim else None
        res = scanner.scan(f"{manifest}#{e['id']}", e["target"], claimed_erasure=claimed,
                           also_erased=claimed_also_erased(e) if claimed else ())
        feats = {"schema_version": SCHEMA_VERSION, "values": dict(sorted(res.features.items())), "evidence": res.evidence}
        triggers = [{k: v for k, v in t.items() if k != "grid"} for t in res.triggers]
        row = {"id": e["id"], "features": _finite(feats), "seconds": round(time.perf_counter() - t0, 2),
               "timings": res.timings,
               "scan": _finite({"verdict": res.verdict, "p_live": res.p_live, "p_tampered": res.p_tampered,
                                "tampered_by": res.tampered_by, "counterfactual": res.counterfactual,
                                "triggers": triggers, "erasure_audit": res.erasure_audit,
                                "location": {k: v for k, v in res.location.items() if k in ("component", "tampered_component", "top_layer")},
                                "warnings": res.warnings})}
        if e["id"] in done:
            replace_row(out, row)
        else:
            append_jsonl(out, row)
    return {"zoo": str(zoo_dir), "features": out.name, "scanned_now": len(entries), "total": len(read_jsonl(out)),
            "seconds": round(time.perf_counter() - t_all, 1)}


def claimed_erasure(entry: dict) -> str | None:
    """The erasure a zoo entry records, when it is a method this eebguard can replay."""
    from eebguard.erasure import ERASURES

    method = entry.get("erasure")
    return method if isinstance(method, str) and method in ERASURES else None


def replace_row(path: Path, row: dict) -> None:
    """Swap the row with ``row["id"]`` for ``row`` (other rows untouched, order kept), atomically."""
    write_jsonl(path, [row if r["id"] == row["id"] else r for r in read_jsonl(path)])


def zoo_table(zoo_dir, reference_free: bool = False) -> list[dict]:
    """Manifest entries joined with their cached features (entries not yet scanned are left out);
    ``reference_free``: the scans without a reference."""
    from eebguard.models import load_manifest

    zoo_dir = Path(zoo_dir)
    feats = {r["id"]: r for r in read_jsonl(zoo_dir / features_file(reference_free))}
    rows = []
    for e in load_manifest(zoo_dir / "manifest.jsonl"):
        if e["id"] in feats:
            rows.append({**e, "scan": feats[e["id"]]})
    return rows
