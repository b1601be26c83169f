"""Storage precision: a model shipped in float16 or bfloat16 differs from a full-precision reference by
rounding alone, and the scanners' robust z-scores read that noise as an edit (a testbed reference rounded
through bfloat16 scores ``te.approach_z`` 13 and ``kv.approach_z`` 12 against itself;
``experiments/precision_rounding.py``). A scan therefore compares such a suspect with the reference rounded
to the same precision."""
from __future__ import annotations

import copy

import torch

#: the pipeline components the scanners compare with the reference's
COMPARED = ("text_encoder", "unet")
# bfloat16 first: its 8-bit significand is the coarser grid, and a bfloat16 value inside float16's range is
# a float16 value too, while real float16 weights are practically never all bfloat16 values
_NARROW = (torch.bfloat16, torch.float16)


@torch.no_grad()
def storage_precision(module: torch.nn.Module) -> torch.dtype | None:
    """bfloat16 or float16 when every floating-point weight of ``module`` is exactly representable in it
    (checked in that order), else None (full precision, or no floating-point weights)."""
    params = [p for p in module.parameters() if p.is_floating_point()]
    if not params:
        return None
    for dt in _NARROW:
        if all(p.dtype == dt or torch.equal(p, p.to(dt).to(p.dtype)) for p in params):
            return dt
    return None


def precisions(pipe) -> dict[str, torch.dtype | None]:
    return {c: storage_precision(getattr(pipe, c)) for c in COMPARED if getattr(pipe, c, None) is not None}


def rounding_needed(suspect: dict, reference: dict) -> dict[str, torch.dtype]:
    """The reference components to round, and to what: where the suspect is stored narrower. Only a
    strictly finer reference is rounded (full precision, or float16 under a bfloat16 suspect), so rounding
    never overflows."""
    finer = {torch.float16: (None,), torch.bfloat16: (None, torch.float16)}
    return {c: dt for c, dt in suspect.items() if c in reference and reference[c] in finer.get(dt, ())}


@torch.no_grad()
def rounded_copy(pipe, to: dict[str, torch.dtype]):
    """A copy of ``pipe`` whose components in ``to`` hold their weights rounded to that dtype (kept in
    their own dtype); the other components are shared with ``pipe``."""
    out = copy.copy(pipe)
    for c, dt in to.items():
        m = copy.deepcopy(getattr(pipe, c))
        for p in m.parameters():
            if p.is_floating_point():
                p.copy_(p.to(dt).to(p.dtype))
        out.register_modules(**{c: m})
    return out


def describe(to: dict[str, torch.dtype]) -> str:
    return ", ".join(f"{c} {str(dt).removeprefix('torch.')}" for c, dt in to.items())
