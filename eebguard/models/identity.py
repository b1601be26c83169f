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


MAX_LEDGER = 5000


def coverage(root: Path, loaded: set[str], limit: int = MAX_LEDGER) -> list[dict]:
    """Every file under a model folder and what loading did with it: ``loaded`` (read and hashed into
    the identity), ``refused`` (a pickle: never unpickled) or ``ignored`` (not read; symlinks not
    followed). Walked without following links, at most ``limit`` entries."""
    import os

    from eebguard.models.safety import is_pickle_file
    from eebguard.records import printable

    out: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel in loaded:
                out.append({"path": printable(rel), "status": "loaded"})
            elif p.is_symlink():
                out.append({"path": printable(rel), "status": "ignored", "reason": "symlink: not followed"})
            elif is_pickle_file(p):
                out.append({"path": printable(rel), "status": "refused",
                            "reason": "pickle file present, never unpickled (the loaded weights are safetensors); a "
                                      "loader that prefers it (torch.load, some pipelines) would run it"})
            else:
                out.append({"path": printable(rel), "status": "ignored", "reason": "not read by the loader"})
            if len(out) >= limit:
                out.append({"path": "...", "status": "ignored", "reason": f"more than {limit} files: rest not listed"})
                return out
    return out


def make_identity(source: str, kind: str, files: dict[str, str], revision: str | None = None,
                  base: dict | None = None, ledger: list[dict] | None = None) -> dict:
    """``coverage``: every file present and what loading did with it (default: the hashed files, loaded)."""
    return {
        "source": source,
        "kind": kind,
        "files": dict(sorted(files.items())),
        "digest": digest(files),
        "revision": revision,
        "base": base,
        "coverage": ledger if ledger is not None else [{"path": k, "status": "loaded"} for k in sorted(files)],
    }


def pipeline_identity(pipe, source: str = "<object>") -> dict:
    """Identity of an in-memory pipeline: one pseudo-file per component, hashed from its state dict."""
    files = {}
    for comp in ("text_encoder", "unet", "vae"):
        module = getattr(pipe, comp, None)
        if module is not None:
            files[f"{comp}/state_dict"] = sha256_state_dict(module)
    return make_identity(source, "object", files)
