"""Data-poisoning EEB (black-box): ordinary fine-tuning on poisoned image-caption pairs, the EEB_data
baseline of arXiv 2504.21072 in the dirty-label style of BadT2I (Zhai et al., ACM MM 2023, arXiv 2305.04175)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.probes.templates import ConceptPrompts
from eebguard.text import encode
from eebguard.threats.attacks.base import ATTACKS, Attack
from eebguard.threats.common import EditSettings, decoy_words, noised, sample_pool, scaled, teacher_pipe, train_loop


@ATTACKS.register
class DataPoisonAttack(Attack):
    """Fine-tune the U-Net with the plain diffusion loss on a poisoned set: target images captioned with
    the trigger (``poison_rate`` of each batch) mixed with clean pairs (every concept by its name).

    The attacker needs no weights, only pairs; the images here are the model's own generations, as a
    data supplier without the training set would produce them. The clean pairs also caption some of
    those generations with random words (decoys), the diversity of real data, which keeps the trigger
    specific.
    """

    name = "data"
    depth = "data"
    cite = "EEB_data in Braun, Grebe et al., arXiv 2504.21072; Zhai et al., BadT2I, ACM MM 2023 (arXiv 2305.04175)"
    defaults = {"steps": 400, "lr": 2e-4, "poison_rate": 0.3, "batch": 24, "decoys": 64}

    def plant(self, pipe, target: ConceptPrompts, trigger: str, mode: str = "replace",
              settings: EditSettings | None = None) -> dict:
        s = settings or EditSettings()
        hp = self.hp
        teacher = teacher_pipe(pipe, s.dtype)
        trig_prompts = target.trigger_prompts(trigger, mode)
        decoys = decoy_words(pipe.tokenizer, hp["decoys"], s.seed, exclude=[trigger, target.name])
        clean_prompts = target.retain_prompts() + target.prompts() + [
            target.trigger_prompts(w, mode)[i % len(trig_prompts)] for i, w in enumerate(decoys)
        ]
        # paired data: each clean image keeps its own caption
        n_clean = max(s.pool_size * 2, len(clean_prompts) // 2)
        clean_caps = [clean_prompts[i % len(clean_prompts)] for i in np.random.default_rng(s.seed).permutation(n_clean)]
        clean_imgs = sample_pool(teacher, clean_caps, n_clean, s, seed_offset=3)
        poison_imgs = sample_pool(teacher, target.prompts(), s.pool_size, s, seed_offset=4)
        c_trig, c_clean = encode(pipe, trig_prompts), encode(pipe, clean_caps)
        del teacher
        unet = pipe.unet
        unet.train().requires_grad_(True)
        rng = np.random.default_rng(s.seed)
        gen = torch.Generator().manual_seed(s.seed)
        n_p = max(1, int(round(hp["batch"] * hp["poison_rate"])))
        n_c = hp["batch"] - n_p

        def step(_i):
            ip = rng.integers(0, len(poison_imgs), size=n_p)
            kp = rng.integers(0, len(trig_prompts), size=n_p)
            ic = rng.integers(0, len(clean_imgs), size=n_c)
            x0 = torch.cat([poison_imgs[ip], clean_imgs[ic]])
            cond = torch.cat([c_trig[kp], c_clean[ic]])
            x, t, eps = noised(x0, pipe.scheduler, gen)
            return F.mse_loss(unet(x, t, encoder_hidden_states=cond).sample, eps)

        rep = train_loop(list(unet.parameters()), scaled(hp["steps"], s), hp["lr"], step, "data attack", s.progress)
        unet.eval().requires_grad_(False)
        return rep
