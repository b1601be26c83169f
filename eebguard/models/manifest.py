"""Zoo manifests: JSON lines, one entry per model (``id``, ``path`` relative to the manifest, optional ``base``)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from eebguard.models.errors import BadManifest
from eebguard.models.safety import check_regular, parse_json_object, safe_relpath

MAX_MANIFEST_BYTES = 64 * 2**20
MAX_ENTRIES = 1_000_000
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+=-]{0,199}$")


def claimed_also_erased(entry: dict) -> tuple[str, ...]:
    """Other concepts an entry says its erasure removed with its target: ``also_erased`` (a list of names),
    or a zoo hard negative's ``hard_negative_spec.also_erase``. Hostile values count as none."""
    names = entry.get("also_erased")
    if names is None:
        spec = entry.get("hard_negative_spec")
        names = [spec.get("also_erase")] if isinstance(spec, dict) else []
    if not isinstance(names, list):
        return ()
    return tuple(n for n in names if isinstance(n, str) and 0 < len(n) <= 64 and n != entry.get("target"))[:8]


def load_manifest(path: str | Path) -> list[dict]:
    """The manifest's entries, each validated. A bad line -> BadManifest naming ``file:line``."""
    entries, errors = manifest_lines(Path(path))
    if errors:
        raise BadManifest(errors[0][1])
    return [entry for _, entry in entries]


def manifest_lines(path: Path) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    """([(line number, entry)], [(line number, why the line is refused)]): every line judged on its own,
    so one bad line (invalid UTF-8, JSON nested 200,000 deep, no id, a path leaving the folder) costs
    that line, not the file. Whole-file problems (missing, special file, oversize) raise BadManifest."""
    where = str(path)
    try:
        size = check_regular(path, where)
    except OSError as exc:
        raise BadManifest(str(exc)) from None
    if size > MAX_MANIFEST_BYTES:
        raise BadManifest(f"{where}: larger than {MAX_MANIFEST_BYTES} bytes")
    root = path.parent
    with open(path, "rb") as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    entries, errors, seen = [], [], {}
    # split on LF only: str.splitlines() would also split inside JSON strings holding U+2028 and friends
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        at = f"{where}:{lineno}"
        try:
            entry = _entry(raw, at, root, seen)
        except (BadManifest, OSError) as exc:  # PathEscape and friends are OSErrors
            errors.append((lineno, str(exc).splitlines()[0][:300] if str(exc) else f"{at}: invalid entry"))
            continue
        seen[entry["id"]] = lineno
        entries.append((lineno, entry))
        if len(entries) + len(errors) > MAX_ENTRIES:
            raise BadManifest(f"{where}: more than {MAX_ENTRIES} entries")
    return entries, errors


def _entry(raw: bytes, at: str, root: Path, seen: dict) -> dict:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadManifest(f"{at}: not UTF-8") from None
    entry = parse_json_object(line, at, err=BadManifest)
    eid = entry.get("id")
    if not isinstance(eid, str) or not ID_RE.match(eid):
        raise BadManifest(f"{at}: 'id' must be a string of letters, digits and ._:+=- (got {str(eid)[:40]!r})")
    if eid in seen:
        raise BadManifest(f"{at}: duplicate id {eid!r} (first on line {seen[eid]})")
    if not isinstance(entry.get("path"), str) or not entry["path"]:
        raise BadManifest(f"{at}: 'path' must be a non-empty string")
    safe_relpath(entry["path"], root, at)
    base = entry.get("base")
    if base is not None:
        if not isinstance(base, str) or not base:
            raise BadManifest(f"{at}: 'base' must be a non-empty string")
        resolve_base(base, root, f"{at}: base")
    return entry


def resolve_base(base: str, root: Path, what: str) -> str:
    """What to load for a base named relative to ``root``: "testbed" and hub ids as they are, anything else
    a folder that must lie inside ``root`` (PathEscape otherwise)."""
    if base == "testbed" or _is_hub_ref(base, root):
        return base
    return str(safe_relpath(base, root, what))


def _is_hub_ref(ref: str, root: Path) -> bool:
    from eebguard.models.hub import parse_hub_id

    return parse_hub_id(ref) is not None and not os.path.lexists(root / ref)


def split_entry_ref(source: str) -> tuple[Path, str] | None:
    """``('dir/manifest.jsonl', 'id')`` for ``'dir/manifest.jsonl#id'``, else None."""
    if "#" not in source:
        return None
    path, _, eid = source.rpartition("#")
    if not path.endswith(".jsonl"):
        return None
    return Path(path), eid


def find_entry(manifest: Path, eid: str) -> tuple[int, dict]:
    """(line number, entry) for ``eid``."""
    entries, errors = manifest_lines(manifest)
    for lineno, entry in entries:
        if entry["id"] == eid:
            return lineno, entry
    # the entry's own line may be a bad one: name the first
    bad = f" ({len(errors)} malformed line(s); first: {errors[0][1][:160]})" if errors else ""
    raise BadManifest(f"{manifest}: no entry with id {eid[:80]!r}{bad}")


def entry_paths(manifest: Path, lineno: int, entry: dict) -> tuple[Path, str | None]:
    """(path of the entry's model, its base reference or None), confined to the manifest's folder."""
    root = manifest.parent
    at = f"{manifest}:{lineno}"
    path = safe_relpath(entry["path"], root, at)
    if not os.path.lexists(path):
        from eebguard.models.errors import MissingFile

        raise MissingFile(f"{at}: {entry['path']} does not exist")
    base = entry.get("base")
    return path, (resolve_base(base, root, f"{at}: base") if base is not None else None)


__all__ = ["entry_paths", "find_entry", "load_manifest", "manifest_lines", "resolve_base", "split_entry_ref"]
