"""Benign edits for hard negatives: changes a naive detector would flag although no erased concept
comes back (a fine-tune on unrelated data; new words bound to *other* concepts use the attacks)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.text import encode
from eebguard.erasure.editing import EditSettings, noised, scaled, train_loop
from eebguard.lab.attacks.common import image_source


def finetune_unrelated(pipe, prompts: list[str], settings: EditSettings | None = None, steps: int = 300,
                       lr: float = 2e-4, batch: int = 16, images: str = "generated",
                       concepts: Sequence[str] = ()) -> dict:
    """Plain diffusion-loss fine-tune of the whole U-Net on images of ``prompts``: the model's own samples
    (``images="generated"``), or the testbed's pictures of ``concepts`` (``"testbed"``, the hard negative
    matched to a data attack built the same way)."""
    s = settings or EditSettings()
    pool = image_source(images, pipe, s, concepts)  # checked before any work
    caps = [prompts[i % len(prompts)] for i in range(max(s.pool_size * 2, len(prompts)))]
    pictures = pool(caps, len(caps), 41)
    del pool  # frees the generated mode's teacher
    cond = encode(pipe, caps)
    unet = pipe.unet
    unet.train().requires_grad_(True)
    rng = np.random.default_rng(s.seed + 41)
    gen = torch.Generator().manual_seed(s.seed + 41)

    def step(_i):
        k = rng.integers(0, len(caps), size=batch)
        x, t, eps = noised(pictures[k], pipe.scheduler, gen)
        return F.mse_loss(unet(x, t, encoder_hidden_states=cond[k]).sample, eps)

    rep = train_loop(list(unet.parameters()), scaled(steps, s), lr, step, "unrelated fine-tune", s.progress)
    unet.eval().requires_grad_(False)
    return rep
