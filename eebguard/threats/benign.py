"""Benign edits for hard negatives: changes a naive detector would flag although no erased concept
comes back (a fine-tune on unrelated data; new words bound to *other* concepts use the attacks)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.text import encode
from eebguard.threats.common import EditSettings, noised, sample_pool, scaled, teacher_pipe, train_loop


def finetune_unrelated(pipe, prompts: list[str], settings: EditSettings | None = None, steps: int = 300,
                       lr: float = 2e-4, batch: int = 16) -> dict:
    """Plain diffusion-loss fine-tune of the whole U-Net on the model's own samples of ``prompts``."""
    s = settings or EditSettings()
    teacher = teacher_pipe(pipe, s.dtype)
    caps = [prompts[i % len(prompts)] for i in range(max(s.pool_size * 2, len(prompts)))]
    images = sample_pool(teacher, caps, len(caps), s, seed_offset=41)
    cond = encode(pipe, caps)
    del teacher
    unet = pipe.unet
    unet.train().requires_grad_(True)
    rng = np.random.default_rng(s.seed + 41)
    gen = torch.Generator().manual_seed(s.seed + 41)

    def step(_i):
        k = rng.integers(0, len(caps), size=batch)
        x, t, eps = noised(images[k], pipe.scheduler, gen)
        return F.mse_loss(unet(x, t, encoder_hidden_states=cond[k]).sample, eps)

    rep = train_loop(list(unet.parameters()), scaled(steps, s), lr, step, "unrelated fine-tune", s.progress)
    unet.eval().requires_grad_(False)
    return rep
