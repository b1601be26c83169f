"""UCE: Unified Concept Editing in Diffusion Models (Gandikota et al., WACV 2024, arXiv 2308.14761)."""
from __future__ import annotations

import time

import torch

from eebguard.probes.templates import ConceptPrompts
from eebguard.erasure.align import aligned_rows, all_rows, word_rows
from eebguard.erasure.editing import EditSettings, kv_layers, ridge_edit
from eebguard.erasure.base import ERASURES, Erasure


def uce_edit(pipe, keys: torch.Tensor, guide_rows: torch.Tensor, preserve: torch.Tensor, lam: float,
             erase_scale: float, preserve_scale: float, original=None) -> int:
    """One UCE closed-form edit of every attn2 K/V: keys -> W0 guide rows, preserving ``preserve``.

    Targets are computed with the weights before this edit (all targets first, then overwrite), or
    with ``original`` K/V layers when given (RECE's rounds)."""
    layers = kv_layers(pipe.unet)
    refs = kv_layers(original.unet) if original is not None else layers
    new = []
    with torch.no_grad():
        for (_, k, v), (_, k0, v0) in zip(layers, refs):
            for lin, lin0 in ((k, k0), (v, v0)):
                W, W0 = lin.weight.data, lin0.weight.data
                values = guide_rows @ W0.T.float()
                new.append((lin, ridge_edit(W, erase_scale ** 0.5 * keys, erase_scale ** 0.5 * values, preserve, lam,
                                            preserve_scale, preserve_targets=preserve @ W.T.float())))
        for lin, W in new:
            lin.weight.data = W
    return len(new)


@ERASURES.register
class UCE(Erasure):
    """Closed-form edit of every attn2 to_k/to_v: the concept's tokens map to a guide's, others preserved.

    W* = (lam W0 + s_e sum v* c^T + s_p sum W0 c_p c_p^T)(lam I + s_e sum c c^T + s_p sum c_p c_p^T)^-1 with
    v* = W0 c_guide. ``tokens`` picks the rows: ``"slot_to_end"`` (the default; the pre-2025
    ``train_erase.py``: the concept slot through EOS and padding, tail-aligned with the guide prompt;
    preserved: every token of the retained prompts) or ``"last"`` (the current ``uce_sd_erase.py``: one
    token per prompt, the concept's last token, for the erased, guide and retained prompts). On the
    testbed "last" leaves the rows after the slot, which a causal encoder fills with the concept too,
    and under-erases ``circle`` (name accuracy 0.77 vs 0.10), so the zoos use "slot_to_end".
    """

    name = "uce"
    cite = "Gandikota et al., Unified Concept Editing in Diffusion Models, WACV 2024 (arXiv 2308.14761)"
    defaults = {"guide": "", "lam": 0.5, "erase_scale": 1.0, "preserve_scale": 1.0, "tokens": "slot_to_end"}
    # the closed form depends on the two scales relative to lam only: these two span every setting
    fit_space = {"erase_scale": (0.125, 8.0), "preserve_scale": (0.125, 8.0)}
    TOKEN_RULES = ("slot_to_end", "last")

    def erase(self, pipe, concept: ConceptPrompts, settings: EditSettings | None = None) -> dict:
        t0 = time.perf_counter()
        rule = self.hp["tokens"]
        if rule not in self.TOKEN_RULES:
            raise ValueError(f"uce: tokens must be one of {self.TOKEN_RULES}, not {rule!r}")
        keys, guide = aligned_rows(pipe, concept.templates, concept.name, self.hp["guide"],
                                   slot_last_only=rule == "last")
        preserve = (word_rows(pipe, concept.retain) if rule == "last"
                    else all_rows(pipe, concept.retain_prompts()))
        n = uce_edit(pipe, keys, guide, preserve, self.hp["lam"], self.hp["erase_scale"], self.hp["preserve_scale"])
        return {"matrices": n, "keys": int(keys.shape[0]), "preserved": int(preserve.shape[0]), "tokens": rule,
                "seconds": round(time.perf_counter() - t0, 3)}
