"""Copy chosen zoo models (their delta files and manifest entries) into a small standalone zoo, e.g.
the examples shipped in ``data/examples``. Paths stay relative to the new manifest's folder."""
from __future__ import annotations

import shutil
from pathlib import Path

from eebguard.zoo.build import MANIFEST, append_jsonl, read_jsonl


def export_models(zoo_dir, ids: list[str], out_dir, append: bool = False) -> list[dict]:
    zoo_dir, out_dir = Path(zoo_dir), Path(out_dir)
    entries = {e["id"]: e for e in read_jsonl(zoo_dir / MANIFEST)}
    missing = [i for i in ids if i not in entries]
    if missing:
        raise KeyError(f"not in {zoo_dir}: {', '.join(missing)}")
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    if not append:
        manifest.unlink(missing_ok=True)
    written = []
    for i in ids:
        e = dict(entries[i])
        files = []
        for rel in e.get("files", [e["path"]]):
            shutil.copyfile(zoo_dir / rel, out_dir / rel)
            files.append(rel)
        e["files"] = files
        e["exported_from"] = zoo_dir.name
        append_jsonl(manifest, e)
        written.append(e)
    return written
