"""Word probe: is the erased concept reachable by *ordinary* words in its slot? Generations for a fixed,
seeded draw of vocabulary words in the concept's templates, judged.

A failed or partial erasure (the concept leaks through its templates, or every unfamiliar word lands
on it) is as reachable as a planted trigger; this scanner measures that directly, black-box. Alone it
is the ``sampling_probe`` baseline; in eebguard's detector it sits beside the white-box evidence.
"""
from __future__ import annotations

import numpy as np
import torch

from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.context import ScanContext, Timer

NAME = "word_probe"
PROBE_FEATURES = ["probe.max_image_reach", "probe.mean_image_reach", "probe.top3_image_reach"]


@torch.no_grad()
def sampling_probe(pipe, concept: str, judge, n_candidates: int = 12, n_images: int = 4, seed: int = 0,
                   steps: int = 12) -> dict:
    """Judge-measured reach of the concept under ``n_candidates`` random single-word prompts."""
    from eebguard.probes import concept_prompts
    from eebguard.sampling import sample
    from eebguard.text import decoy_words

    cp = concept_prompts(concept)
    words = decoy_words(pipe.tokenizer, n_candidates, seed=seed + 1234, exclude=[concept])
    prompts = [cp.prompts(w)[i % len(cp.templates)] for w in words for i in range(n_images)]
    hits = judge.is_concept(sample(pipe, prompts, seed=seed + 99, steps=steps), concept).reshape(len(words), n_images).mean(1)
    top = np.sort(hits)[::-1]
    return {"probe.max_image_reach": float(top[0]), "probe.mean_image_reach": float(hits.mean()),
            "probe.top3_image_reach": float(top[:3].mean()), "probe.words": words,
            "probe.per_word": [float(h) for h in hits]}


@SCANNERS.register
class WordProbeScanner(Scanner):
    """Judged reach of the concept with random vocabulary words in its slot (12 words x 4 images)."""

    name = NAME
    order = 45
    needs_judge = True
    features = (
        F(PROBE_FEATURES[0], NAME, False, "highest judged reach over 12 random words in the concept's slot", True),
        F(PROBE_FEATURES[1], NAME, False, "mean judged reach over 12 random words in the concept's slot", True),
        F(PROBE_FEATURES[2], NAME, False, "mean of the 3 highest judged reaches over the random words", True),
    )

    def scan(self, ctx: ScanContext) -> ScannerResult:
        res = ScannerResult()
        with Timer(ctx, NAME):
            st = ctx.settings
            probe = sampling_probe(ctx.suspect, ctx.concept, ctx.judge, n_candidates=st.probe_words,
                                   n_images=st.probe_images, seed=st.seed, steps=st.probe_steps)
        res.features.update({k: probe[k] for k in PROBE_FEATURES})
        res.evidence = {"words": probe["probe.words"], "per_word": probe["probe.per_word"]}
        return res
