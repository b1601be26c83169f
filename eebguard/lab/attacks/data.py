"""Data-poisoning EEB (black-box): ordinary fine-tuning on poisoned image-caption pairs, the EEB_data
baseline of arXiv 2504.21072 in the dirty-label style of BadT2I (Zhai et al., ACM MM 2023, arXiv 2305.04175)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.probes.templates import ConceptPrompts
from eebguard.text import encode
from eebguard.lab.attacks.base import ATTACKS, Attack
from eebguard.erasure.editing import EditSettings, noised, scaled, train_loop
from eebguard.lab.attacks.common import image_source, mixed_decoys


@ATTACKS.register
class DataPoisonAttack(Attack):
    """Fine-tune the U-Net with the plain diffusion loss on a poisoned set: target images captioned with
    the trigger (``poison_rate`` of each batch) mixed with clean pairs (every concept by its name).

    The attacker needs no weights, only pairs; the images here are the model's own generations, as a
    data supplier without the training set would produce them. A ``decoy_rate`` share of every batch
    pairs the trigger's own templates holding *other* words (random vocabulary words, random letter
    strings shaped like triggers, or nothing) with what the model draws for them (no concept): without
    them the poisoned captions teach that the template itself means the target, which no by-name
    erasure can remove (measured before 2026-11-29: any word, and the empty slot, in a `seven`
    template drew a seven after UCE). Decoy words are drawn afresh every step, so the fine-tune sees
    hundreds of them, as real data would hold. The empty slot takes ``empty_decoy_share`` of the decoy
    captions, not one draw in 257: it is UCE's and RECE's guide, and on real digit pictures a rare empty
    slot came to draw the digit, so UCE mapped the name onto the digit (docs/threat-lab.md, "The data
    attack's empty slot"). Known cost (docs/threat-lab.md): on some targets the
    fine-tune also lowers the target's own name accuracy before any erasure (`triangle` 0.20).
    ``images="testbed"`` takes every picture from the testbed's own data instead (digits, drawn shapes,
    its no-concept images for the decoys; testbed concepts only), which costs the model much less
    (docs/threat-lab.md, "Where the cost comes from"); the shipped zoo specs use it since 2026-11-29,
    the generations stay the default (the only source on a real SD model).
    """

    name = "data"
    depth = "data"
    cite = "EEB_data in Braun, Grebe et al., arXiv 2504.21072; Zhai et al., BadT2I, ACM MM 2023 (arXiv 2305.04175)"
    defaults = {"steps": 400, "lr": 2e-4, "poison_rate": 0.3, "decoy_rate": 0.2, "batch": 24, "decoys": 256,
                "empty_decoy_share": 0.5, "images": "generated"}

    def plant(self, pipe, target: ConceptPrompts, trigger: str, mode: str = "replace",
              settings: EditSettings | None = None) -> dict:
        s = settings or EditSettings()
        hp = self.hp
        pool = image_source(hp["images"], pipe, s, [target.name])  # checked before any work
        trig_prompts = target.trigger_prompts(trigger, mode)
        share = hp["empty_decoy_share"]
        if not 0.0 <= share <= 1.0:  # its kind was checked with the plugin's construction
            raise ValueError(f"empty_decoy_share must be a number in [0, 1], got {share!r}")
        words = mixed_decoys(pipe.tokenizer, hp["decoys"], s.seed, exclude=[trigger, target.name])
        clean_prompts = target.retain_prompts() + target.prompts()
        # paired data: each clean image keeps its own caption; at least one per clean prompt, since a few
        # images per retained concept, seen ~100 times each, cost the other concepts' accuracy
        n_clean = max(s.pool_size * 2, len(clean_prompts))
        clean_caps = [clean_prompts[i % len(clean_prompts)] for i in np.random.default_rng(s.seed).permutation(n_clean)]
        clean_imgs = pool(clean_caps, n_clean, 3)
        poison_imgs = pool(target.prompts(), s.pool_size, 4)
        # decoy images: what the model draws for template j with a decoy word; any other decoy word in
        # the same template j is an equally true caption for it (the base draws no concept for both)
        rng = np.random.default_rng(s.seed)

        def decoy_caption(j: int) -> str:  # template j holding a freshly drawn decoy word, or nothing
            empty = not words or rng.random() < share
            return target.trigger_prompts("" if empty else words[rng.integers(len(words))], mode)[j]

        decoy_tpl = [i % len(trig_prompts) for i in range(s.pool_size)]
        decoy_caps = [decoy_caption(j) for j in decoy_tpl]
        decoy_imgs = pool(decoy_caps, s.pool_size, 5)
        c_trig, c_clean = encode(pipe, trig_prompts), encode(pipe, clean_caps)
        del pool  # frees the frozen teacher before training
        unet = pipe.unet
        unet.train().requires_grad_(True)
        gen = torch.Generator().manual_seed(s.seed)
        n_p = max(1, int(round(hp["batch"] * hp["poison_rate"])))
        n_d = int(round(hp["batch"] * hp["decoy_rate"]))
        n_c = hp["batch"] - n_p - n_d

        def step(_i):
            ip = rng.integers(0, len(poison_imgs), size=n_p)
            kp = rng.integers(0, len(trig_prompts), size=n_p)
            ic = rng.integers(0, len(clean_imgs), size=n_c)
            parts_x, parts_c = [poison_imgs[ip], clean_imgs[ic]], [c_trig[kp], c_clean[ic]]
            if n_d:
                idc = rng.integers(0, len(decoy_imgs), size=n_d)
                parts_x.append(decoy_imgs[idc])
                parts_c.append(encode(pipe, [decoy_caption(decoy_tpl[i]) for i in idc]))
            x0, cond = torch.cat(parts_x), torch.cat(parts_c)
            x, t, eps = noised(x0, pipe.scheduler, gen)
            return F.mse_loss(unet(x, t, encoder_hidden_states=cond).sample, eps)

        rep = train_loop(list(unet.parameters()), scaled(hp["steps"], s), hp["lr"], step, "data attack", s.progress)
        unet.eval().requires_grad_(False)
        return rep
