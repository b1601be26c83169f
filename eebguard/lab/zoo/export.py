"""Copy chosen zoo models (their delta files and manifest entries) into a small standalone zoo, e.g.
the examples shipped in ``data/examples``. Paths stay relative to the new manifest's folder.

``base`` re-points the copies at another base reference (e.g. a zoo built on a copy of the shipped
testbed, exported as examples over ``testbed``): allowed only when both bases' weight files are
byte-identical, so an exported delta still means what it meant in its zoo."""
from __future__ import annotations

import shutil
from pathlib import Path

from eebguard.lab.zoo.build import MANIFEST, append_jsonl, read_jsonl

WEIGHT_FILES = ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors")


def _base_folder(ref: str, zoo_dir: Path) -> Path:
    from eebguard.models.manifest import resolve_base
    from eebguard.paths import data_path

    if ref == "testbed":
        return data_path("testbed", "base")
    folder = Path(resolve_base(ref, zoo_dir, "base"))
    if not folder.is_dir():
        raise ValueError(f"base {ref!r} is not a local folder; only a folder base can be re-pointed")
    return folder


def same_weights(a: Path, b: Path) -> bool:
    from eebguard.models.identity import sha256_file

    return all((a / f).is_file() and (b / f).is_file() and sha256_file(a / f) == sha256_file(b / f)
               for f in WEIGHT_FILES)


def _rebase_delta(src: Path, dst: Path, base: str) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["base"] = base
    save_file(tensors, str(dst), metadata=meta)


def export_models(zoo_dir, ids: list[str], out_dir, append: bool = False, base: str | None = None) -> list[dict]:
    zoo_dir, out_dir = Path(zoo_dir), Path(out_dir)
    entries = {e["id"]: e for e in read_jsonl(zoo_dir / MANIFEST)}
    missing = [i for i in ids if i not in entries]
    if missing:
        raise KeyError(f"not in {zoo_dir}: {', '.join(missing)}")
    if base is not None:
        for ref in sorted({entries[i].get("base", "testbed") for i in ids} - {base}):
            if not same_weights(_base_folder(ref, zoo_dir), _base_folder(base, zoo_dir)):
                raise ValueError(f"cannot re-point models on base {ref!r} at {base!r}: their weights differ")
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    if not append:
        manifest.unlink(missing_ok=True)
    written = []
    for i in ids:
        e = dict(entries[i])
        files = []
        for rel in e.get("files", [e["path"]]):
            if base is not None and rel.endswith(".safetensors"):
                _rebase_delta(zoo_dir / rel, out_dir / rel, base)
            else:
                shutil.copyfile(zoo_dir / rel, out_dir / rel)
            files.append(rel)
        e["files"] = files
        if base is not None:
            e["base"] = base
        e["exported_from"] = zoo_dir.name
        append_jsonl(manifest, e)
        written.append(e)
    return written
