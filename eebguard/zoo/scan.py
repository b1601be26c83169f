"""Scan every model of a zoo once and cache its features (``features.jsonl``; scanned without a reference,
``features-noref.jsonl``), so fitting and evaluating detectors never rescans. Appended and fsynced per
model; an interrupted run resumes. ``rescan`` replaces chosen models' rows after a scanner change (each
replacement is an atomic rewrite of the file)."""
from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from eebguard.zoo.build import FEATURES, FEATURES_REFERENCE_FREE, append_jsonl, read_jsonl, write_jsonl


def features_file(reference_free: bool = False) -> str:
    """The zoo file holding scans with a reference (the default) or without one."""
    return FEATURES_REFERENCE_FREE if reference_free else FEATURES


def scan_zoo(zoo_dir, *, reference="testbed", judge=None, settings=None, progress: bool = True,
             limit: int | None = None, ids: list[str] | None = None, rescan: bool = False) -> dict:
    """``reference``: the base to compare with, or None (or "none") for a reference-free scan, cached in
    its own file (``features-noref.jsonl``): the reference-needing scanners do not run, as for a user
    without the base. ``ids``: only these models (unknown ids are a ``KeyError``); ``rescan``: scan them
    even if already scanned and replace their rows in place."""
    from eebguard.judges import get_judge
    from eebguard.models import load, load_manifest
    from eebguard.models.manifest import claimed_also_erased
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext, ScanSettings, run_scanners

    zoo_dir = Path(zoo_dir)
    manifest = zoo_dir / "manifest.jsonl"
    reference_free = reference is None or str(reference).lower() == "none"
    out = zoo_dir / features_file(reference_free)
    done = {r["id"] for r in read_jsonl(out)}
    entries = load_manifest(manifest)
    if ids is not None:
        wanted = set(ids)
        unknown = sorted(wanted - {e["id"] for e in entries})
        if unknown:
            raise KeyError(f"not in {manifest}: {', '.join(unknown)}")
        entries = [e for e in entries if e["id"] in wanted]
    entries = [e for e in entries if rescan or e["id"] not in done][: limit]
    judge = judge or get_judge("testbed")
    ref = None if reference_free else load(reference).pipe
    settings = settings or ScanSettings()
    t_all = time.perf_counter()
    shared: dict = {}  # reference-side results reused across models
    for e in tqdm(entries, desc=f"scan {zoo_dir.name}", disable=not progress):
        t0 = time.perf_counter()
        pipe = load(f"{manifest}#{e['id']}").pipe
        ctx = ScanContext(pipe, e["target"], concept_prompts(e["target"]), reference=ref, judge=judge, settings=settings,
                          shared=shared, claimed_erasure=claimed_erasure(e), claimed_also=claimed_also_erased(e))
        feats = run_scanners(ctx)
        row = {"id": e["id"], "features": feats.to_json(), "seconds": round(time.perf_counter() - t0, 2),
               "timings": {k: round(v, 3) for k, v in ctx.timings.items()}}
        if e["id"] in done:
            replace_row(out, row)
        else:
            append_jsonl(out, row)
    return {"zoo": str(zoo_dir), "features": out.name, "scanned_now": len(entries), "total": len(read_jsonl(out)),
            "seconds": round(time.perf_counter() - t_all, 1)}


def claimed_erasure(entry: dict) -> str | None:
    """The erasure a zoo entry records, when it is a method this eebguard can replay."""
    from eebguard.threats.erasure import ERASURES

    method = entry.get("erasure")
    return method if isinstance(method, str) and method in ERASURES else None


def replay_zoo(zoo_dir, *, reference="testbed", judge=None, progress: bool = True, ids: list[str] | None = None,
               redo: bool = False) -> dict:
    """Add the claimed erasure's replay (``replay.*``, the ``erasure_replay`` scanner) to a scanned zoo's
    records without rescanning: it needs only the recorded triggers, the reference and the judge. Schema
    2 rows move to the current schema (marked ``upgraded_from``); rows already at schema 3 or 4 are left alone unless
    ``redo`` (then only ``ids``, after a change to what their claim says). The file is rewritten after
    each model, so an interrupted run resumes."""
    from eebguard.features import SCHEMA_VERSION
    from eebguard.judges import get_judge
    from eebguard.models import load, load_manifest
    from eebguard.models.manifest import claimed_also_erased
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext, ScanSettings, run_scanners
    from eebguard.scanners.replay import NAME

    zoo_dir = Path(zoo_dir)
    out = zoo_dir / FEATURES
    rows = [_schema_1_to_2(r) for r in read_jsonl(out)]
    entries = {e["id"]: e for e in load_manifest(zoo_dir / "manifest.jsonl")}
    if redo and not ids:
        raise ValueError("redo needs ids (the rows to replay again)")
    if ids is not None:
        unknown = sorted(set(ids) - {r["id"] for r in rows})
        if unknown:
            raise KeyError(f"not in {out}: {', '.join(unknown)}")
    version = lambda r: str((r.get("features") or {}).get("schema_version"))  # noqa: E731
    todo = [i for i, r in enumerate(rows) if (ids is None or r["id"] in ids)
            and (version(r) == "2" or (redo and version(r) in ("3", SCHEMA_VERSION)))]  # 3 -> 4 added nothing here
    judge = judge or get_judge("testbed")
    ref = load(reference).pipe if todo else None
    shared: dict = {}
    t_all = time.perf_counter()
    for i in tqdm(todo, desc=f"replay {zoo_dir.name}", disable=not progress):
        row, f = rows[i], rows[i]["features"]
        e = entries.get(row["id"]) or {}
        target = e.get("target") or row["id"]
        # the scanner itself, on the recorded triggers: it reads the suspect's tokenizer only, which a zoo
        # model shares with its base, so the base stands in for the model the record came from
        ctx = ScanContext(ref, target, concept_prompts(target), reference=ref, judge=judge, settings=ScanSettings(),
                          shared=shared, claimed_erasure=claimed_erasure(e), claimed_also=claimed_also_erased(e),
                          cache={"triggers": ((f.get("evidence") or {}).get("hard_trigger") or {}).get("triggers")})
        feats = run_scanners(ctx, names=[NAME])
        rows[i] = join_scanner(row, feats, NAME, keep=lambda k: not k.startswith("replay."))  # a redo replaces them
        write_jsonl(out, rows)
    return {"zoo": str(zoo_dir), "replayed_now": len(todo), "total": len(rows),
            "seconds": round(time.perf_counter() - t_all, 1)}


def upgrade_reference_free(zoo_dir, *, judge=None, settings=None, progress: bool = True) -> dict:
    """Bring a zoo's reference-free scans of schema 3 to the current schema without rescanning: schema 4
    adds only the soft-trigger search's judge-driven mode (``soft.judge_*``), which reads the suspect and
    the judge alone, so that scanner runs by itself on each model and its features join the row (marked
    ``upgraded_from``). Rewritten after each model: an interrupted run resumes."""
    from eebguard.features import SCHEMA_VERSION
    from eebguard.judges import get_judge
    from eebguard.models import load, load_manifest
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext, ScanSettings, run_scanners
    from eebguard.scanners.soft_trigger import NAME

    if SCHEMA_VERSION != "4":  # this step is 3 -> 4 only; a later schema needs its own
        raise RuntimeError(f"upgrade_reference_free knows schema 3 -> 4, not -> {SCHEMA_VERSION}")
    zoo_dir = Path(zoo_dir)
    out = zoo_dir / FEATURES_REFERENCE_FREE
    rows = read_jsonl(out)
    entries = {e["id"]: e for e in load_manifest(zoo_dir / "manifest.jsonl")}
    todo = [i for i, r in enumerate(rows) if str((r.get("features") or {}).get("schema_version")) == "3"]
    unknown = sorted(rows[i]["id"] for i in todo if rows[i]["id"] not in entries)
    if unknown:
        raise KeyError(f"rows of {out} not in the manifest: {', '.join(unknown)}")
    judge = judge or get_judge("testbed")
    settings = settings or ScanSettings()
    t_all = time.perf_counter()
    for i in tqdm(todo, desc=f"upgrade {zoo_dir.name}", disable=not progress):
        row = rows[i]
        e = entries[row["id"]]
        pipe = load(f"{zoo_dir / 'manifest.jsonl'}#{e['id']}").pipe
        ctx = ScanContext(pipe, e["target"], concept_prompts(e["target"]), judge=judge, settings=settings)
        feats = run_scanners(ctx, names=[NAME])
        rows[i] = {**join_scanner(row, feats, NAME),
                   "timings": {**row.get("timings", {}), **{k: round(v, 3) for k, v in ctx.timings.items()}}}
        write_jsonl(out, rows)
    return {"zoo": str(zoo_dir), "features": out.name, "upgraded_now": len(todo), "total": len(rows),
            "seconds": round(time.perf_counter() - t_all, 1)}


def join_scanner(row: dict, feats, name: str, keep=lambda k: True) -> dict:
    """``row`` with one scanner's new run joined: its evidence replaces what that scanner had recorded, its
    values join the ``keep``-ing old ones, and the row moves to the current schema (``upgraded_from``
    the version it was scanned at, when older)."""
    from eebguard.features import SCHEMA_VERSION

    f = row["features"]
    was = str(f.get("schema_version"))
    evidence = {k: v for k, v in f.get("evidence", {}).items() if k != name}
    evidence["scanners"] = {**evidence.get("scanners", {}), **feats.evidence["scanners"]}
    evidence.update({k: v for k, v in feats.evidence.items() if k != "scanners"})
    values = {k: v for k, v in f.get("values", {}).items() if keep(k)}
    upgraded = {"upgraded_from": f.get("upgraded_from", was)} if was != SCHEMA_VERSION else {}
    return {**row, "features": {**f, "schema_version": SCHEMA_VERSION,
                                "values": dict(sorted({**values, **feats.values}.items())),
                                "evidence": evidence, **upgraded}}


def replace_row(path: Path, row: dict) -> None:
    """Swap the row with ``row["id"]`` for ``row`` (other rows untouched, order kept), atomically."""
    write_jsonl(path, [row if r["id"] == row["id"] else r for r in read_jsonl(path)])


def zoo_table(zoo_dir, reference_free: bool = False) -> list[dict]:
    """Manifest entries joined with their cached features (entries not yet scanned are left out);
    ``reference_free``: the scans without a reference."""
    from eebguard.models import load_manifest

    zoo_dir = Path(zoo_dir)
    feats = {r["id"]: upgrade_row(r) for r in read_jsonl(zoo_dir / features_file(reference_free))}
    rows = []
    for e in load_manifest(zoo_dir / "manifest.jsonl"):
        if e["id"] in feats:
            rows.append({**e, "scan": feats[e["id"]]})
    return rows


def degenerate_attribution(features: dict) -> bool:
    """True for a row scanned with the attribution scanner's old baseline (only the trigger's slot padded),
    under which integrated gradients put exactly zero on every other token and the share is 1 by
    construction: no more tokens carry attribution than the trigger has."""
    ev = features.get("evidence") or {}
    tokens = (ev.get("attribution") or {}).get("tokens")
    triggers = (ev.get("hard_trigger") or {}).get("triggers") or []
    if not tokens or not triggers:
        return False
    return sum(1 for t in tokens if t.get("share")) <= len(triggers[0].get("tokens") or [])


def upgrade_row(row: dict) -> dict:
    """A recorded row as this eebguard reads it: schema 1 rows moved to schema 2, and a degenerate
    ``attr.trigger_share`` (old baseline, see ``degenerate_attribution``) dropped: absent, not 1."""
    return _drop_degenerate_attribution(_schema_1_to_2(row))


def _schema_1_to_2(row: dict) -> dict:
    """Schema 2 added the word_probe scanner, whose numbers a schema-1 zoo scan already recorded as
    ``baseline_probe`` (same function, same seed, same model), so they move over exactly. Any other
    schema mismatch is left as it is (the detector then refuses it; schema 2 to 3 needs ``replay_zoo``)."""
    from eebguard.detect.baselines import PROBE_FEATURES

    f, probe = row.get("features") or {}, row.get("baseline_probe") or {}
    if str(f.get("schema_version")) != "1" or not all(k in probe for k in PROBE_FEATURES):
        return row
    values = {**f.get("values", {}), **{k: float(probe[k]) for k in PROBE_FEATURES}}
    evidence = {**f.get("evidence", {}), "word_probe": {"words": probe.get("probe.words")}}
    return {**row, "features": {**f, "schema_version": "2", "values": dict(sorted(values.items())),
                                "evidence": evidence, "upgraded_from": "1"}}


def _drop_degenerate_attribution(row: dict) -> dict:
    f = row.get("features") or {}
    if "attr.trigger_share" not in (f.get("values") or {}) or not degenerate_attribution(f):
        return row
    values = {k: v for k, v in f["values"].items() if k != "attr.trigger_share"}
    return {**row, "features": {**f, "values": values, "dropped": ["attr.trigger_share"]}}
