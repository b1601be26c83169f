"""Baselines the detector is measured against, with the same evaluation:

* ``t2ishield``: the same calibrated estimator over T2IShield-style cross-attention assimilation
  features only (Wang et al., T2IShield, ECCV 2024, arXiv 2407.04215);
* ``sampling_probe``: black-box, no white-box features: generate images for a fixed set of candidate
  prompts (the concept's name and random vocabulary words in its templates) and ask the judge.
"""
from __future__ import annotations

import numpy as np
import torch

T2ISHIELD_FEATURES = ["attn.ftt_trigger_ratio", "attn.ftt_name_ratio", "attn.eos_share_trigger"]
PROBE_FEATURES = ["probe.max_image_reach", "probe.mean_image_reach", "probe.top3_image_reach"]


@torch.no_grad()
def sampling_probe(pipe, concept: str, judge, n_candidates: int = 12, n_images: int = 4, seed: int = 0,
                   steps: int = 12) -> dict:
    """Judge-measured reach of the concept under ``n_candidates`` random single-word prompts."""
    from eebguard.probes import concept_prompts
    from eebguard.sampling import sample
    from eebguard.threats.common import decoy_words

    cp = concept_prompts(concept)
    words = decoy_words(pipe.tokenizer, n_candidates, seed=seed + 1234, exclude=[concept])
    prompts = [cp.prompts(w)[i % len(cp.templates)] for w in words for i in range(n_images)]
    hits = judge.is_concept(sample(pipe, prompts, seed=seed + 99, steps=steps), concept).reshape(len(words), n_images).mean(1)
    top = np.sort(hits)[::-1]
    return {"probe.max_image_reach": float(top[0]), "probe.mean_image_reach": float(hits.mean()),
            "probe.top3_image_reach": float(top[:3].mean()), "probe.words": words}
