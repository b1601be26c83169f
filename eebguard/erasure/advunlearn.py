"""AdvUnlearn: Defensive Unlearning with Adversarial Training for Robust Concept Erasure
(Zhang et al., NeurIPS 2024, arXiv 2405.15234)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.probes.templates import ConceptPrompts
from eebguard.sampling import tokenize
from eebguard.text import encode, soft_tokens
from eebguard.erasure.editing import EditSettings, noised, sample_pool, scaled, teacher_pipe, train_loop
from eebguard.erasure.base import ERASURES, Erasure

PLACEHOLDER = "x"  # a one-token word whose embedding the adversarial prefix replaces


@ERASURES.register
class AdvUnlearn(Erasure):
    """Adversarial training of the text encoder (all transformer layers + final norm; embeddings and U-Net
    frozen): min_theta l_u(theta, c*) + gamma l_r(theta), with c* = [P; c] and the prefix embedding P found by
    an inner attack that makes the erased model regenerate the concept (warm-started, "fast" schedule).

    l_u is the ESD loss through the encoder, l_r holds retained prompts to the original's predictions.
    """

    name = "advunlearn"
    robust = True
    cite = "Zhang et al., Defensive Unlearning with Adversarial Training for Robust Concept Erasure, NeurIPS 2024 (arXiv 2405.15234)"
    # testbed scale (published: 1000 iterations, 30 attack steps each, lr 1e-5 on SD)
    defaults = {"steps": 60, "lr": 5e-4, "eta": 1.0, "gamma": 1.0, "batch": 8, "warmup": 0.2,
                "attack_every": 4, "attack_steps": 4, "attack_lr": 1e-2}

    def erase(self, pipe, concept: ConceptPrompts, settings: EditSettings | None = None) -> dict:
        s = settings or EditSettings()
        hp = self.hp
        original = teacher_pipe(pipe, s.dtype)
        unet = pipe.unet  # frozen and shared with the teacher's predictions
        unet.requires_grad_(False)
        te = pipe.text_encoder
        prompts, retain = concept.prompts(), concept.retain_prompts()
        adv_prompts = [f"{PLACEHOLDER} {p}" for p in prompts]
        pool = sample_pool(original, prompts, s.pool_size, s, seed_offset=31)
        pool_r = sample_pool(original, retain, s.pool_size, s, seed_offset=32)
        c_orig, c_ret_orig, null = encode(original, prompts), encode(original, retain), encode(original, [""])
        ids_c, ids_adv, ids_r = tokenize(pipe, prompts), tokenize(pipe, adv_prompts), tokenize(pipe, retain)
        pos = torch.zeros(ids_adv.shape[1], dtype=torch.bool)
        pos[1] = True  # the prefix slot right after BOS
        emb = te.get_input_embeddings().weight
        P = (emb[tokenize(pipe, [PLACEHOLDER])[0, 1]].detach().clone()[None]).requires_grad_(True)
        trainable = [p for n, p in te.named_parameters() if not n.startswith("embeddings")]
        for p in trainable:
            p.requires_grad_(True)
        te.train()
        rng = np.random.default_rng(s.seed + 31)
        gen = torch.Generator().manual_seed(s.seed + 31)
        b = hp["batch"]
        steps = scaled(hp["steps"], s)
        warm = int(hp["warmup"] * steps)
        attack_opt = torch.optim.Adam([P], lr=hp["attack_lr"])
        state = {"attacks": 0, "attack_loss": None}

        def attack(x, t, k):
            te.eval()
            for _ in range(hp["attack_steps"]):
                with soft_tokens(te, pos, P):
                    c = te(ids_adv[k])[0]
                with torch.no_grad():
                    goal = original.unet(x.to(s.dtype), t, encoder_hidden_states=c_orig[k].to(s.dtype)).sample.float()
                loss = F.mse_loss(unet(x, t, encoder_hidden_states=c).sample, goal)
                attack_opt.zero_grad(set_to_none=True)
                loss.backward()
                attack_opt.step()
            te.train()
            state["attacks"] += 1
            state["attack_loss"] = float(loss.detach())

        def step(i):
            k = rng.integers(0, len(prompts), size=b)
            x, t, _ = noised(pool[rng.integers(0, len(pool), size=b)], pipe.scheduler, gen)
            adversarial = i >= warm
            if adversarial and (i - warm) % hp["attack_every"] == 0:
                attack(x, t, k)
            with torch.no_grad():
                e = original.unet(torch.cat([x, x]).to(s.dtype), torch.cat([t, t]),
                                  encoder_hidden_states=torch.cat([c_orig[k], null.expand(b, -1, -1)]).to(s.dtype)).sample.float()
                e_c, e_0 = e.chunk(2)
                target = e_0 - hp["eta"] * (e_c - e_0)
            if adversarial:
                with soft_tokens(te, pos, P.detach()):
                    c = te(ids_adv[k])[0]
            else:
                c = te(ids_c[k])[0]
            l_u = F.mse_loss(unet(x, t, encoder_hidden_states=c).sample, target)
            r = rng.integers(0, len(retain), size=b)
            xr, tr, _ = noised(pool_r[rng.integers(0, len(pool_r), size=b)], pipe.scheduler, gen)
            with torch.no_grad():
                goal_r = original.unet(xr.to(s.dtype), tr, encoder_hidden_states=c_ret_orig[r].to(s.dtype)).sample.float()
            l_r = F.mse_loss(unet(xr, tr, encoder_hidden_states=te(ids_r[r])[0]).sample, goal_r)
            return l_u + hp["gamma"] * l_r

        rep = train_loop(trainable, steps, hp["lr"], step, "advunlearn", s.progress)
        te.eval().requires_grad_(False)
        rep.update({"attacks": state["attacks"], "last_attack_loss": state["attack_loss"]})
        return rep
