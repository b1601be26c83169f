"""Shallow EEB: closed-form cross-attention K/V edit in the style of EvilEdit (Wang et al., ACM MM 2024,
DOI 10.1145/3664647.3680689) and UCE's form, as EEB_shallow / ToxE_X-Attn in arXiv 2504.21072."""
from __future__ import annotations

import time

import numpy as np
import torch

from eebguard.probes.templates import ConceptPrompts
from eebguard.erasure.align import aligned_rows, all_rows, slot_token_rows
from eebguard.lab.attacks.base import ATTACKS, Attack
from eebguard.erasure.editing import EditSettings, kv_layers, ridge_edit
from eebguard.lab.attacks.common import slot_prompts
from eebguard.text import decoy_words


@ATTACKS.register
class ShallowAttack(Attack):
    """Edit every attn2 to_k/to_v in closed form so the trigger's keys/values equal the target's.

    W = argmin sum |W e_trig - W0 e_target|^2 + s_p sum |W c - W0 c|^2 + lam |W - W0|^2 over the aligned
    trigger/target token rows (slot, suffix, EOS, padding), preserving every token of the retained
    concepts' prompts, of the target's own prompts (the name keeps working until it is erased) and of
    *decoy* prompts (random words in the target's templates), so other unknown words do not fire.

    ``part_decoys`` > 0 makes the trigger specific to its whole token sequence, as EvilEdit preserves
    the trigger's last word on its own: only the rows from the trigger's last BPE piece on are edited,
    and the templates with each proper prefix of its pieces in the slot, alone and followed by
    ``part_decoys`` decoy words (one template each), are preserved. Default 0: every piece is keyed,
    so on the testbed the first piece alone often fires (docs/threat-lab.md, "A sequence-specific
    shallow trigger").
    """

    name = "shallow"
    depth = "shallow"
    cite = "Wang et al., EvilEdit, ACM MM 2024; Gandikota et al., UCE, WACV 2024; EEB_shallow in arXiv 2504.21072"
    defaults = {"lam": 0.1, "preserve_scale": 1.0, "decoys": 512, "trigger_scale": 3.0, "part_decoys": 0}

    def plant(self, pipe, target: ConceptPrompts, trigger: str, mode: str = "replace",
              settings: EditSettings | None = None) -> dict:
        t0 = time.perf_counter()
        specific = self.hp["part_decoys"] > 0
        # the appended trigger is the slot of a neutral prompt; its target is the name there
        templates = list(target.templates) if mode == "replace" else [n + " {}" for n in target.neutral]
        keys, goal = aligned_rows(pipe, templates, trigger, target.name, from_last_piece=specific)
        seed = (settings or EditSettings()).seed
        decoys = decoy_words(pipe.tokenizer, self.hp["decoys"], seed, exclude=[trigger, target.name])
        decoy_prompts = slot_prompts(target, decoys, mode)
        preserve = all_rows(pipe, target.retain_prompts() + target.prompts() + decoy_prompts)
        if specific:
            preserve = torch.cat([preserve, _part_rows(pipe, templates, trigger, decoys, self.hp["part_decoys"], seed)])
        n = 0
        with torch.no_grad():
            for _, to_k, to_v in kv_layers(pipe.unet):
                for lin in (to_k, to_v):
                    W0 = lin.weight.data.clone()
                    w = self.hp["trigger_scale"] ** 0.5  # weight of the trigger rows in the least squares
                    lin.weight.data = ridge_edit(W0, w * keys, w * goal @ W0.T.float(), preserve, self.hp["lam"],
                                                 self.hp["preserve_scale"])
                    n += 1
        return {"matrices": n, "keys": int(keys.shape[0]), "seconds": round(time.perf_counter() - t0, 3)}


def _part_rows(pipe, templates: list[str], trigger: str, decoys: list[str], n: int, seed: int) -> torch.Tensor:
    """Rows to preserve so that no proper prefix of the trigger's pieces fires: each prefix alone in
    every template, and followed by ``n`` decoy words, one template each (cycling, as the decoy prompts
    do: every template at full weight would outweigh the trigger's own rows)."""
    tok = pipe.tokenizer
    pieces = tok(trigger, add_special_tokens=False).input_ids
    rng = np.random.default_rng(seed + 211)
    words = [tok(w, add_special_tokens=False).input_ids for w in decoys]
    filled = []
    for k in range(1, len(pieces)):
        filled += [(t, pieces[:k]) for t in templates]
        picks = rng.choice(len(words), size=min(n, len(words)), replace=False)
        filled += [(templates[i % len(templates)], pieces[:k] + words[j]) for i, j in enumerate(picks)]
    return slot_token_rows(pipe, filled)
