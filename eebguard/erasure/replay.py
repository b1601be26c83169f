"""Replaying a claimed erasure on the reference, as an auditor does: the same method, by name, with its
published defaults and another seed than any defender's. A prompt that the replay answers too is
consistent with a leak of the method itself; one it does not answer needs a change made before or
beside the erasure (docs/scanning.md, "How a scan decides")."""
from __future__ import annotations

from collections.abc import Sequence

# Not 0, the seed the threat lab's defenders erase with, so that measured numbers never replay their noise.
ERASURE_REPLAY_SEED = 1


def erased_copy(reference, concept: str, method: str, *, also: Sequence[str] = (), seed: int = ERASURE_REPLAY_SEED,
                device: str = "cpu", params: dict | None = None):
    """A copy of ``reference`` with ``concept`` (and the ``also`` concepts the model says were erased with
    it, together as the method erases several) erased by ``method`` (its published defaults, ``params``
    over them). Erasures train in float32, as the threat lab does; a half-precision reference gets its
    copy back in its own dtype. Training methods (ESD, AdvUnlearn) cost minutes on the testbed."""
    import torch

    from eebguard.models.formats import copy_pipeline
    from eebguard.probes import concept_prompts
    from eebguard.erasure.editing import EditSettings
    from eebguard.erasure import get_erasure

    eraser = get_erasure(method, **(params or {}))  # unknown names fail here, before any copy
    dtype = reference.unet.dtype
    pipe = copy_pipeline(reference)
    if dtype != torch.float32:  # a no-op cast is skipped: diffusers warns on every to(dtype)
        pipe = pipe.to(dtype=torch.float32)
    eraser.erase_many(pipe, [concept_prompts(c) for c in (concept, *also)], EditSettings(device=device, seed=seed))
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)


def shared_erased_copy(shared: dict, reference, concept: str, method: str, device: str = "cpu",
                       also: Sequence[str] = ()):
    """``erased_copy`` built once per (concept, method, also) and kept in ``shared`` (the reference-side
    cache that many scans share), so the replay scanner and the vetting API's check reuse one copy."""
    key = ("erased_reference", concept, method) + ((tuple(also),) if also else ())
    if key not in shared:
        shared[key] = erased_copy(reference, concept, method, also=also, device=device)
    return shared[key]
