"""Content identity of a loaded model: sha256 per file, one digest over all files."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def digest(files: dict[str, str]) -> str:
    """sha256 over sorted ``relpath NUL sha256 LF`` lines: independent of folder location and listing order."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


def hash_files(paths: dict[str, Path]) -> dict[str, str]:
    return {rel: sha256_file(p) for rel, p in sorted(paths.items())}


def sha256_state_dict(module) -> str:
    """Hash of a module's tensors (name, dtype, shape, bytes) in name order."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}\0{str(t.dtype)}\0{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def make_identity(source: str, kind: str, files: dict[str, str], revision: str | None = None,
                  base: dict | None = None) -> dict:
    return {
        "source": source,
        "kind": kind,
        "files": dict(sorted(files.items())),
        "digest": digest(files),
        "revision": revision,
        "base": base,
    }


def pipeline_identity(pipe, source: str = "<object>") -> dict:
    """Identity of an in-memory pipeline: one pseudo-file per component, hashed from its state dict."""
    files = {}
    for comp in ("text_encoder", "unet", "vae"):
        module = getattr(pipe, comp, None)
        if module is not None:
            files[f"{comp}/state_dict"] = sha256_state_dict(module)
    return make_identity(source, "object", files)
