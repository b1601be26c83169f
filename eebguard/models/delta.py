"""eebguard deltas, the zoo's format: ``<component>.<param>`` -> ``new - base`` in a safetensors file.

``__metadata__``: ``{"format": "eebguard-delta", "version": "1", "base": "<base reference>", "mode": "diff"}``.
Loading is base weights (fp32) + diff; only parameters that changed are stored.
"""
from __future__ import annotations

from pathlib import Path

import torch

from eebguard.models.configs import MODEL_COMPONENTS
from eebguard.models.errors import BadDelta, DtypeMismatch, ShapeMismatch, UnexpectedWeights, wrap_errors
from eebguard.models.formats import DELTA_FORMAT

VERSION = "1"
MODE = "diff"
STORE_DTYPES = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16"}


def write_delta(pipe, base_pipe, path: str | Path, base_ref: str, dtype: torch.dtype = torch.float16,
                atol: float = 0) -> list[str]:
    """Store ``pipe - base_pipe`` for parameters that changed (exactly, or by more than ``atol``); returns their
    ``<component>.<param>`` names."""
    from safetensors.torch import save_file

    if dtype not in STORE_DTYPES:
        raise ValueError(f"delta dtype must be one of {sorted(map(str, STORE_DTYPES))}")
    if not isinstance(base_ref, str) or not base_ref:
        raise ValueError("base_ref must be a non-empty string (a path, 'testbed' or a hub id)")
    tensors: dict[str, torch.Tensor] = {}
    for comp in MODEL_COMPONENTS:
        new, old = getattr(pipe, comp, None), getattr(base_pipe, comp, None)
        if new is None and old is None:
            continue
        if (new is None) != (old is None):
            raise ValueError(f"{comp} is present in only one of the two pipelines")
        sa, sb = new.state_dict(), old.state_dict()
        if sa.keys() != sb.keys():
            raise ValueError(f"{comp}: the two pipelines have different parameters")
        for k in sorted(sa):
            a, b = sa[k].detach().to("cpu"), sb[k].detach().to("cpu")
            if a.shape != b.shape:
                raise ValueError(f"{comp}.{k}: shapes differ {list(a.shape)} vs {list(b.shape)}")
            if not a.is_floating_point():
                if not torch.equal(a, b):
                    raise ValueError(f"{comp}.{k}: non-float buffer differs; deltas hold float diffs only")
                continue
            d = a.float() - b.float()  # same arithmetic as loading (fp32)
            changed = bool((d != 0).any()) if atol == 0 else bool(d.abs().max() > atol)
            if not changed:
                continue
            stored = d.to(dtype)
            if not bool(torch.isfinite(stored).all()):
                raise ValueError(f"{comp}.{k}: diff overflows {dtype}; write with dtype=torch.float32")
            tensors[f"{comp}.{k}"] = stored.contiguous()
    meta = {"format": DELTA_FORMAT, "version": VERSION, "base": base_ref, "mode": MODE}
    save_file(tensors, str(path), metadata=meta)
    return list(tensors)


def delta_metadata(header, where: str) -> dict[str, str]:
    """Validated metadata of a delta file's (already validated) safetensors header."""
    meta = header.metadata
    if meta.get("format") != DELTA_FORMAT:
        raise BadDelta(f"{where}: not an eebguard delta (format={meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise BadDelta(f"{where}: unsupported delta version {str(meta.get('version'))[:20]!r}")
    if meta.get("mode") != MODE:
        raise BadDelta(f"{where}: unsupported delta mode {str(meta.get('mode'))[:20]!r}")
    if not meta.get("base"):
        raise BadDelta(f"{where}: delta names no base")
    return meta


def _targets(pipe, header, where: str) -> dict[str, tuple[str, str, torch.Tensor]]:
    """Map each delta key to the live tensor it changes, checking component, name, shape and dtype."""
    states = {}
    out = {}
    for key, info in header.tensors.items():
        comp, _, name = key.partition(".")
        if comp not in MODEL_COMPONENTS or not name:
            raise BadDelta(f"{where}: key {key} does not start with text_encoder./unet./vae.")
        module = getattr(pipe, comp, None)
        if module is None:
            raise UnexpectedWeights(f"{where}: delta changes {comp}, which the base does not have")
        if comp not in states:
            states[comp] = module.state_dict()
        target = states[comp].get(name)
        if target is None:
            raise UnexpectedWeights(f"{where}: delta key {key} is not a parameter of the base")
        if tuple(target.shape) != info.shape:
            raise ShapeMismatch(f"{where}: {key} has shape {list(info.shape)}, the base has {list(target.shape)}")
        if info.dtype not in STORE_DTYPES.values() or not target.is_floating_point():
            raise DtypeMismatch(f"{where}: {key} is stored as {info.dtype}; deltas must be F16/BF16/F32 float diffs")
        out[key] = (comp, name, target)
    return out


def apply_delta(pipe, path: str | Path, where: str | None = None) -> list[str]:
    """Add a delta file's diffs to ``pipe`` in place (computed in fp32); returns the changed names."""
    from eebguard.models.safety import load_safetensors, read_safetensors_header

    path = Path(path)
    where = where or str(path)
    header = read_safetensors_header(path, where)
    delta_metadata(header, where)
    targets = _targets(pipe, header, where)
    tensors = load_safetensors(path, header, where)
    with torch.no_grad(), wrap_errors(f"{where}: applying delta", BadDelta):
        for key, (comp, name, target) in targets.items():
            target.copy_((target.float() + tensors[key].to(target.device).float()).to(target.dtype))
    return list(targets)
