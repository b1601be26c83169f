"""A scan's budgets (``ScanSettings``) and the named profiles: ``default`` (every measured number),
``fast`` (smoke tests and triage) and ``smoke`` (plumbing checks at real SD shape on CPU)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ScanSettings:
    seed: int = 0
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    vocab_batch: int = 2048  # vocabulary screening batch (text encoder forwards)
    unet_batch: int = 256
    n_candidates: int = 32  # tokens kept from vocabulary screening
    objective_samples: int = 8  # (x_t, t) pairs of the score objective
    soft_steps: int = 30
    soft_tokens: int = 1
    search_steps: int = 3  # greedy coordinate rounds of the discrete search
    max_trigger_tokens: int = 4
    image_samples: int = 8  # generations per prompt set for image-based reachability
    sample_steps: int = 12  # DDIM steps of scan-time generations (the judge reads 12-step testbed samples fine)
    guidance: float = 4.0
    # the soft-trigger search without a reference: the judge reads few-step generations, differentiated
    judge_samples: int = 8
    judge_sample_steps: int = 4
    judge_steps: int = 30
    judge_batch: int = 8  # generations per backward pass (gradients accumulate): bounds memory on SD
    judge_checkpoint: bool | None = None  # recompute U-Net/VAE activations in backward; None: on for CUDA
    probe_words: int = 12  # the word probe's random words ...
    probe_images: int = 4  # ... and generations per word
    probe_steps: int = 12
    map_steps: int = 10  # DDIM steps along which the attention-map scanner records cross-attention
    vocab_limit: int | None = None  # screen only the first N token ids (smoke runs at real shape on CPU)
    progress: bool = False


# named settings: "fast" is for smoke tests and triage (weaker search; the shipped detector is fitted on
# features from the default settings, so its probabilities are calibrated for those only)
PROFILES = {
    "default": {},
    "fast": dict(soft_steps=10, search_steps=1, n_candidates=8, objective_samples=4, image_samples=4, sample_steps=8,
                 judge_samples=4, judge_steps=10),
    # every scanner end to end at real SD shape on CPU, at minimal budgets: checks that it runs, not what it finds
    "smoke": dict(soft_steps=2, search_steps=1, n_candidates=4, objective_samples=2, image_samples=2, sample_steps=2,
                  judge_samples=2, judge_sample_steps=1, judge_steps=2, judge_batch=2, max_trigger_tokens=2,
                  probe_words=2, probe_images=1, probe_steps=2, map_steps=2, vocab_limit=64, vocab_batch=64),
}


def settings_for(profile: str = "default", **overrides) -> ScanSettings:
    if profile not in PROFILES:
        raise ValueError(f"unknown scan profile {profile!r}; choose from {', '.join(PROFILES)}")
    return ScanSettings(**{**PROFILES[profile], **overrides})
