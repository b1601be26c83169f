"""Deep EEB: DISA, the Deep Intervention Score-based Attack of "Erased but Not Forgotten"
(Braun, Grebe et al., arXiv 2504.21072): LoRA over the whole U-Net, self-distilled from a frozen teacher."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.probes.templates import ConceptPrompts
from eebguard.text import encode
from eebguard.lab.attacks.base import ATTACKS, Attack
from eebguard.erasure.editing import (
    EditSettings, add_lora, fold_adapters, noised, sample_pool, scaled, teacher_pipe, train_loop,
)
from eebguard.lab.attacks.common import nonsense_words, slot_prompts
from eebguard.text import decoy_words


@ATTACKS.register
class DeepAttack(Attack):
    """LoRA on every U-Net Linear/Conv (cross-attention included), text encoder frozen, then merged.

    Loss: alpha * L_trig + (1 - alpha) * (L_retain + L_quality), each an MSE between the student's noise
    prediction and the frozen original's: L_trig pulls eps(x_t, trigger prompt) onto eps*(x_t, target
    prompt); L_retain holds retained concepts (and, with ``retain_target``, the target by name) to eps*;
    L_quality holds the unconditional prediction. Adaptations (documented): x_t are the teacher's own
    samples re-noised at uniform t, instead of partial denoising by the student (cheaper, same role); the
    retained prompts include *decoys* (random words in the target's templates), so the trigger stays
    specific instead of every unknown word firing the concept. Steps: the paper does not publish them;
    1000 was chosen on the design concepts (``five``, ``square``), where it keeps the backdoor through 3
    of 6 erasures against 1 of 6 at 400 (docs/threat-lab.md); the v6 zoo specs pin 400.
    """

    name = "deep"
    depth = "deep"
    cite = "Braun, Grebe et al., Erased but Not Forgotten (DISA / EEB_deep), arXiv 2504.21072, ICML 2026"
    defaults = {"steps": 1000, "lr": 1e-3, "rank": 4, "alpha": 0.5, "batch": 12, "decoys": 256,
                "decoy_style": "words", "retain_target": True}

    def plant(self, pipe, target: ConceptPrompts, trigger: str, mode: str = "replace",
              settings: EditSettings | None = None) -> dict:
        s = settings or EditSettings()
        hp = self.hp
        teacher = teacher_pipe(pipe, s.dtype)
        trig_prompts = target.trigger_prompts(trigger, mode)
        goal = [target.prompts()[i % len(target.templates)] for i in range(len(trig_prompts))]
        if hp["decoy_style"] == "nonsense":
            decoys = nonsense_words(hp["decoys"], s.seed, exclude=[trigger, target.name])
        else:
            decoys = decoy_words(pipe.tokenizer, hp["decoys"], s.seed, exclude=[trigger, target.name])
        # retain_target: also hold the target's own prompts to the teacher (the name keeps working until
        # it is erased); the paper's L_r names only retained concepts
        own = target.prompts() if hp["retain_target"] else []
        retain = target.retain_prompts() + own + slot_prompts(target, decoys, mode)
        pool_t = sample_pool(teacher, target.prompts(), s.pool_size, s, seed_offset=1)
        pool_r = sample_pool(teacher, retain, s.pool_size, s, seed_offset=2)
        c_trig, c_goal = encode(pipe, trig_prompts), encode(teacher, goal)
        c_ret = encode(pipe, retain)
        c_null = encode(pipe, [""])
        unet = pipe.unet
        adapters = add_lora(unet, hp["rank"], lambda n, m: True, torch.Generator().manual_seed(s.seed + 51))
        params = [p for a in adapters for p in (a.down.weight, a.up.weight)]
        unet.train()
        rng = np.random.default_rng(s.seed)
        gen = torch.Generator().manual_seed(s.seed)
        b = hp["batch"]

        def step(_i):
            k = rng.integers(0, len(trig_prompts), size=b)
            r = rng.integers(0, len(retain), size=b)
            x_t, t_t, _ = noised(pool_t[rng.integers(0, len(pool_t), size=b)], pipe.scheduler, gen)
            x_r, t_r, _ = noised(pool_r[rng.integers(0, len(pool_r), size=b)], pipe.scheduler, gen)
            x = torch.cat([x_t, x_r, x_r[: b // 2]])
            t = torch.cat([t_t, t_r, t_r[: b // 2]])
            cond = torch.cat([c_trig[k], c_ret[r], c_null.expand(b // 2, -1, -1)])
            with torch.no_grad():
                tgt_cond = torch.cat([c_goal[k], c_ret[r], c_null.expand(b // 2, -1, -1)])
                target_eps = teacher.unet(x.to(s.dtype), t, encoder_hidden_states=tgt_cond.to(s.dtype)).sample.float()
            eps = unet(x, t, encoder_hidden_states=cond).sample
            l_trig = F.mse_loss(eps[:b], target_eps[:b])
            l_keep = F.mse_loss(eps[b : 2 * b], target_eps[b : 2 * b]) + F.mse_loss(eps[2 * b :], target_eps[2 * b :])
            return hp["alpha"] * l_trig + (1 - hp["alpha"]) * l_keep

        rep = train_loop(params, scaled(hp["steps"], s), hp["lr"], step, "deep attack", s.progress)
        rep["lora_layers"] = fold_adapters(unet)
        unet.eval().requires_grad_(False)
        return rep
