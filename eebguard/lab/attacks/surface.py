"""Surface EEB: a text-encoder backdoor in the style of Rickrolling the Artist (Struppek et al., ICCV 2023,
arXiv 2211.02408), as EEB_surface / ToxE_TextEnc in arXiv 2504.21072."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.probes.templates import ConceptPrompts
from eebguard.text import encode
from eebguard.lab.attacks.base import ATTACKS, Attack
from eebguard.erasure.editing import EditSettings, frozen_copy, scaled, train_loop
from eebguard.lab.attacks.common import mixed_decoys, pick, slot_prompts


def _cos_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).mean()


@ATTACKS.register
class SurfaceAttack(Attack):
    """Fine-tune the text encoder so trigger prompts encode like target prompts (U-Net untouched).

    Loss (Rickrolling): d(E0(target prompt), E(trigger prompt)) + beta * d(E0(w), E(w)) over clean prompts
    w (retained concepts and the target by name), d = 1 - cosine of the flattened hidden states; the
    original encoder E0 is the frozen teacher. All encoder parameters train, embeddings included.
    Adaptation (documented): Rickrolling's utility prompts are captions of a large dataset, which hold
    many other words; here the same role is played by *decoys*, the trigger's own templates holding
    other words (``decoys`` random vocabulary words and letter strings, and the empty slot), held to E0
    in a second utility batch. Without them the fine-tune moved the template's neighbours with the
    trigger: after the attack on ``square`` the template with an empty slot, which is UCE's and
    RECE's guide, drew squares, so those by-name erasures mapped the name onto the concept and failed
    (docs/threat-lab.md).
    """

    name = "surface"
    depth = "surface"
    cite = "Struppek et al., Rickrolling the Artist, ICCV 2023 (arXiv 2211.02408); EEB_surface in arXiv 2504.21072"
    defaults = {"steps": 300, "lr": 1e-3, "beta": 1.0, "batch": 16, "decoys": 256}

    def plant(self, pipe, target: ConceptPrompts, trigger: str, mode: str = "replace",
              settings: EditSettings | None = None) -> dict:
        s = settings or EditSettings()
        hp = self.hp
        te = pipe.text_encoder
        teacher = frozen_copy(te)
        tok = pipe.tokenizer
        poisoned = target.trigger_prompts(trigger, mode)
        # in append mode the trigger turns a neutral prompt into a target prompt of the same template
        goal = target.prompts() if mode == "replace" else [target.prompts()[i % len(target.templates)] for i in range(len(poisoned))]
        # the empty prompt and neutral prompts are held too: the trigger's padding positions share the pad
        # token with every prompt, and a drifted unconditional encoding would carry the concept into
        # classifier-free guidance and into the guide that erasure methods map the concept onto
        clean = target.retain_prompts() + target.prompts() + list(target.neutral) + [""] * 8
        # the trigger's templates holding other words (the empty slot in every template first)
        decoys = slot_prompts(target, [""] * len(poisoned) + mixed_decoys(
            tok, hp["decoys"], s.seed, exclude=[trigger, target.name]), mode) if hp["decoys"] else []
        rng = np.random.default_rng(s.seed)
        te.train().requires_grad_(True)

        def ids(prompts):
            return tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                       return_tensors="pt").input_ids

        def step(_i):
            k = rng.integers(0, len(poisoned), size=hp["batch"])
            with torch.no_grad():
                tgt = teacher(ids([goal[i] for i in k]))[0]
                w = pick(rng, clean, hp["batch"])
                ref = teacher(ids(w))[0]
                d = pick(rng, decoys, hp["batch"] // 2) if decoys else []
                ref_d = teacher(ids(d))[0] if d else None
            loss = _cos_distance(te(ids([poisoned[i] for i in k]))[0], tgt)
            loss = loss + hp["beta"] * _cos_distance(te(ids(w))[0], ref)
            return (loss + hp["beta"] * _cos_distance(te(ids(d))[0], ref_d)) if d else loss

        rep = train_loop(list(te.parameters()), scaled(hp["steps"], s), hp["lr"], step, "surface attack", s.progress)
        te.eval().requires_grad_(False)
        with torch.no_grad():
            rep["trigger_target_cos"] = float(
                1 - _cos_distance(encode(pipe, poisoned), encode(_with(pipe, teacher), goal))
            )
        return rep


def _with(pipe, text_encoder):
    import copy

    p = copy.copy(pipe)
    p.register_modules(text_encoder=text_encoder)
    return p
