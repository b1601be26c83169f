"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023, arXiv 2303.07345)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.probes.templates import ConceptPrompts
from eebguard.text import encode
from eebguard.erasure.editing import EditSettings, noised, sample_pool, scaled, teacher_pipe, train_loop
from eebguard.erasure.base import ERASURES, Erasure


class _ESD(Erasure):
    """Negative-guidance fine-tuning: eps(x_t, c) -> eps*(x_t, 0) - eta (eps*(x_t, c) - eps*(x_t, 0)).

    x_t: the frozen model's own samples of the concept, re-noised at uniform t (the new diffusers-era
    code samples x_t with the frozen base as well). The student is prompted with the concept's templates.
    """

    cite = "Gandikota et al., Erasing Concepts from Diffusion Models, ICCV 2023 (arXiv 2303.07345)"
    # testbed scale (published: 1000 iterations at lr 1e-5 on SD); more drifts the other concepts
    defaults = {"steps": 80, "lr": 2.5e-4, "eta": 1.0, "batch": 16}

    def trainable(self, unet) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def erase(self, pipe, concept: ConceptPrompts, settings: EditSettings | None = None) -> dict:
        s = settings or EditSettings()
        hp = self.hp
        teacher = teacher_pipe(pipe, s.dtype)
        prompts = concept.prompts()
        pool = sample_pool(teacher, prompts, s.pool_size, s, seed_offset=11)
        c, null = encode(pipe, prompts), encode(pipe, [""])
        unet = pipe.unet
        unet.requires_grad_(False)
        params = self.trainable(unet)
        for p in params:
            p.requires_grad_(True)
        unet.train()
        rng = np.random.default_rng(s.seed + 11)
        gen = torch.Generator().manual_seed(s.seed + 11)
        b = hp["batch"]

        def step(_i):
            k = rng.integers(0, len(prompts), size=b)
            x, t, _ = noised(pool[rng.integers(0, len(pool), size=b)], pipe.scheduler, gen)
            with torch.no_grad():
                e = teacher.unet(torch.cat([x, x]).to(s.dtype), torch.cat([t, t]),
                                 encoder_hidden_states=torch.cat([c[k], null.expand(b, -1, -1)]).to(s.dtype)).sample.float()
                e_c, e_0 = e.chunk(2)
                target = e_0 - hp["eta"] * (e_c - e_0)
            return F.mse_loss(unet(x, t, encoder_hidden_states=c[k]).sample, target)

        rep = train_loop(params, scaled(hp["steps"], s), hp["lr"], step, self.name, s.progress)
        unet.eval().requires_grad_(False)
        rep["trained_parameters"] = int(sum(p.numel() for p in params))
        return rep


@ERASURES.register
class ESDx(_ESD):
    """ESD-x: fine-tune every cross-attention (attn2) parameter with the ESD loss."""

    name = "esd_x"

    def trainable(self, unet):
        return [p for n, p in unet.named_parameters() if ".attn2." in n]


@ERASURES.register
class ESDu(_ESD):
    """ESD-u: fine-tune every U-Net parameter outside cross-attention with the ESD loss."""

    name = "esd_u"
    # the original code also leaves the output block and time embedding out.
    # Budget chosen on the design concepts over the v7 base (docs/threat-lab.md): 80 steps at 5e-5
    # left `square` at name accuracy 0.77; 300 at 2e-4 is the smallest tried that erases it (0.13)
    # with other concepts kept (1.00; `five` 0.00 / 0.97 at 600). The v6 zoo specs pin 80 at 5e-5.
    defaults = {**_ESD.defaults, "steps": 300, "lr": 2e-4}

    def trainable(self, unet):
        return [p for n, p in unet.named_parameters()
                if ".attn2." not in n and not n.startswith(("time_embedding", "conv_out", "conv_norm_out"))]
