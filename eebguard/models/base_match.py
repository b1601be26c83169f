"""Which base a suspect derives from (``--reference auto``): fingerprint it against candidate bases.

A fine-tune, an erasure or a backdoor edits some tensors and leaves the rest bit-identical to its base
(most erasures touch only cross-attention; a LoRA merge touches only its targets), and even a full
fine-tune stays within a few percent of its base, while two independently trained bases are as far
apart as random vectors (relative distance about 1.4). So each candidate of the suspect's shape is
scored by the share of its tensors that are bit-identical to the suspect's and by the median relative
distance ``|s - b| / |b|`` over tensors; the closest is chosen, the runner-up recorded beside it.

A candidate whose parameter names or shapes differ cannot be the base (it is listed as incompatible).
A suspect no candidate explains well (``MATCH_IDENTICAL`` / ``MATCH_DISTANCE``) gets no reference: the
scan goes on reference-free, with a warning that says so.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable

import torch

COMPONENTS = ("text_encoder", "text_encoder_2", "unet", "vae")
#: a base explains the suspect when this share of its tensors is bit-identical ...
MATCH_IDENTICAL = 0.5
#: ... or their median relative distance is at most this (a full fine-tune; stored in fp16, every tensor moves)
MATCH_DISTANCE = 0.1


@torch.no_grad()
def fingerprint(suspect, base) -> dict:
    """How close ``suspect`` is to ``base``: {compatible, identical (share of tensors), distance (median
    relative L2 distance), tensors, per component}; ``compatible`` False with the reason when the two are
    not shaped alike (then no distance is computed)."""
    per, dists, same, n = {}, [], 0, 0
    for comp in COMPONENTS:
        a, b = getattr(suspect, comp, None), getattr(base, comp, None)
        if (a is None) != (b is None):
            return {"compatible": False, "reason": f"{comp} present in only one of them"}
        if a is None:
            continue
        pa, pb = dict(a.state_dict()), dict(b.state_dict())
        if pa.keys() != pb.keys():
            return {"compatible": False, "reason": f"{comp}: parameter names differ"}
        c_same, c_dists = 0, []
        for k, va in pa.items():
            vb = pb[k]
            if va.shape != vb.shape:
                return {"compatible": False, "reason": f"{comp}.{k[:80]}: shape {tuple(va.shape)} vs {tuple(vb.shape)}"}
            if va.numel() == 0:
                continue
            if va.dtype == vb.dtype and torch.equal(va, vb):
                c_same += 1
                c_dists.append(0.0)
                continue
            fa, fb = va.float(), vb.float().to(va.device)
            c_dists.append(float((fa - fb).norm() / fb.norm().clamp(min=1e-12)))
        per[comp] = {"identical": c_same / max(1, len(c_dists)), "distance": statistics.median(c_dists) if c_dists else 0.0,
                     "tensors": len(c_dists)}
        same, n, dists = same + c_same, n + len(c_dists), dists + c_dists
    if not n:
        return {"compatible": False, "reason": "no tensors to compare"}
    return {"compatible": True, "identical": same / n, "distance": statistics.median(dists), "tensors": n,
            "components": per}


def explains(fp: dict) -> bool:
    """The fingerprint is one of a model derived from that base."""
    return bool(fp.get("compatible")) and (fp["identical"] >= MATCH_IDENTICAL or fp["distance"] <= MATCH_DISTANCE)


def choose_base(suspect, candidates: Iterable[tuple[str, Callable[[], object]]]) -> tuple[str | None, object, dict]:
    """(name, pipeline, evidence) of the candidate base that best explains ``suspect``; (None, None, evidence)
    when none does. ``candidates``: (name, loader) pairs, loaded one at a time (only the best so far is
    kept: real bases are gigabytes). A candidate that fails to load is recorded with its error.

    Examples
    --------
    >>> name, ref, ev = choose_base(pipe, [("testbed", lambda: load("testbed").pipe)])  # doctest: +SKIP
    >>> name, ev["chosen"]["identical"]                                                  # doctest: +SKIP
    ('testbed', 0.97)
    """
    from eebguard.models.errors import ModelLoadError

    rows, best, best_pipe = [], None, None
    for name, loader in candidates:
        try:
            pipe = loader()
        except (ModelLoadError, OSError, ValueError) as exc:
            rows.append({"name": name, "compatible": False, "reason": f"failed to load: {str(exc).splitlines()[0][:200]}"})
            continue
        fp = {"name": name, **fingerprint(suspect, pipe)}
        rows.append(fp)
        if fp["compatible"] and (best is None or _rank(fp) < _rank(best)):
            best, best_pipe = fp, pipe
        del pipe
    ranked = sorted((r for r in rows if r.get("compatible")), key=_rank)
    evidence = {"candidates": [{k: v for k, v in r.items() if k != "components"} for r in rows],
                "chosen": best, "runner_up": ranked[1] if len(ranked) > 1 else None,
                "rule": f"most tensors bit-identical, then smallest median relative distance; a base explains the model "
                        f"when >= {MATCH_IDENTICAL:.0%} of tensors are identical or the median distance is <= {MATCH_DISTANCE}"}
    if best is None or not explains(best):
        evidence["chosen"] = None
        evidence["closest"] = best
        return None, None, evidence
    return best["name"], best_pipe, evidence


def _rank(fp: dict) -> tuple[float, float]:
    return (-fp["identical"], fp["distance"])
