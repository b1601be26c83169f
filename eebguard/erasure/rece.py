"""RECE: Reliable and Efficient Concept Erasure (Gong et al., ECCV 2024, arXiv 2407.12383)."""
from __future__ import annotations

import time

import torch

from eebguard.probes.templates import ConceptPrompts
from eebguard.erasure.align import aligned_rows, all_rows
from eebguard.erasure.editing import EditSettings, kv_layers, teacher_pipe
from eebguard.erasure.base import ERASURES, Erasure
from eebguard.erasure.uce import uce_edit


def adversarial_embeddings(pipe, original, rows: torch.Tensor, lam_r: float) -> torch.Tensor:
    """RECE's closed form: c' = (sum_l W'_l^T W'_l + lam_r I)^-1 (sum_l W'_l^T W_l) c, per row, over every
    attn2 K/V matrix W'_l (current) and W_l (original): the embedding whose keys/values under the
    edited model reproduce the concept's under the original ("regzero" variant)."""
    d = rows.shape[1]
    A = lam_r * torch.eye(d, dtype=torch.float64)
    B = torch.zeros(d, d, dtype=torch.float64)
    for (_, k, v), (_, k0, v0) in zip(kv_layers(pipe.unet), kv_layers(original.unet)):
        for W, W0 in ((k.weight, k0.weight), (v.weight, v0.weight)):
            W, W0 = W.detach().double(), W0.detach().double()
            A += W.T @ W
            B += W.T @ W0
    return torch.linalg.solve(A, B @ rows.double().T).T.float()


@ERASURES.register
class RECE(Erasure):
    """UCE, then rounds of: derive the adversarial embedding that still regenerates the concept under the
    edited K/V (closed form), and UCE-edit it to the guide too (W_ref and targets from the current W')."""

    name = "rece"
    robust = True
    cite = "Gong et al., Reliable and Efficient Concept Erasure of Text-to-Image Diffusion Models, ECCV 2024 (arXiv 2407.12383)"
    # rounds: RECE's README runs 1 round (lam_r 0.1) for easy objects, 2 for unsafe concepts, 3 for nudity;
    # testbed concepts are objects. Zoos built before 2026-11-28 used 2 (their specs pin it); on the v7
    # candidate testbed a second round maps a short adversarial embedding to the guide and erases every
    # concept (other-concept accuracy 0.15 after `circle`)
    defaults = {"guide": "", "lam": 0.1, "preserve_scale": 0.1, "erase_scale": 1.0, "rounds": 1, "lam_r": 0.1}
    # the closed form depends on the two scales relative to lam only: these two span every setting
    fit_space = {"erase_scale": (0.125, 8.0), "preserve_scale": (0.125, 8.0)}

    def erase(self, pipe, concept: ConceptPrompts, settings: EditSettings | None = None) -> dict:
        t0 = time.perf_counter()
        hp = self.hp
        original = teacher_pipe(pipe)
        keys, guide = aligned_rows(pipe, concept.templates, concept.name, hp["guide"])
        preserve = all_rows(pipe, concept.retain_prompts())
        uce_edit(pipe, keys, guide, preserve, hp["lam"], hp["erase_scale"], hp["preserve_scale"])
        norms = []
        for _ in range(hp["rounds"]):
            adv = adversarial_embeddings(pipe, original, keys, hp["lam_r"])
            norms.append(float(adv.norm(dim=1).mean()))
            # targets with the current W' (RECE keeps editing the edited model). Adaptation: the concept's
            # own tokens stay in the erase set, else on 64-d testbed embeddings a round undoes the last
            uce_edit(pipe, torch.cat([keys, adv]), torch.cat([guide, guide]), preserve, hp["lam"],
                     hp["erase_scale"], hp["preserve_scale"])
        return {"rounds": hp["rounds"], "adv_norms": norms, "seconds": round(time.perf_counter() - t0, 3)}
