"""CLIP-style contrastive pre-training of the testbed text encoder.

Stable Diffusion's text encoder is a *pretrained* CLIP encoder, frozen while the U-Net trains. The
testbed mirrors that: the tiny ``CLIPTextModel`` is first trained contrastively against a throwaway
image encoder on the testbed's own image-caption pairs, then frozen for U-Net training. Captions
often share a concept, so the contrastive target is soft: every image whose labels the caption names
is a positive (supervised-contrastive form of the CLIP loss).

That loss alone puts every non-concept word in one class (its captions all show "no concept"), so the
encoder learns to collapse made-up words onto one encoding, unlike CLIP, whose 400M captions keep rare
words apart. ``identity_weight > 0`` adds a word-identity term (SimCSE-style InfoNCE through its own
projection head): the same random word in two different templates must encode closer than any other
word. Half the words are random letter strings, so sub-word BPE pieces that no whole word brings into
training are trained too (made-up triggers such as ``qzvex`` split into such pieces).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from eebguard.testbed.concepts import COLOURS, CONCEPTS
from eebguard.lab.testbed.data import random_strings


class _ImageEncoder(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(), nn.Flatten(), nn.Linear(64 * 16, dim),
        )

    def forward(self, x):
        return self.net(x)


def _caption_labels(caption: str) -> tuple[int | None, str | None]:
    words = caption.split()
    concept = next((c.index for c in CONCEPTS if c.name in words), None)
    colour = next((c for c in COLOURS if c in words), None)
    return concept, colour


#: templates a random word can fill without a colour (both families)
_WORD_TEMPLATES = sorted({t for c in CONCEPTS for t in c.templates() if "{c}" not in t})


def identity_views(data, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """``n`` random words (half vocabulary words, half letter strings), each in two different templates."""
    words = [data.distractors[i] for i in rng.integers(len(data.distractors), size=n // 2)]
    words += random_strings(rng, n - len(words))
    a, b = [], []
    for w in words:
        i, j = rng.choice(len(_WORD_TEMPLATES), size=2, replace=False)
        a.append(_WORD_TEMPLATES[i].format(w=w, s=w))
        b.append(_WORD_TEMPLATES[j].format(w=w, s=w))
    return a, b


def pretrain_text_encoder(pipe, data, rng: np.random.Generator, steps: int, batch_size: int = 128, lr: float = 2e-3,
                          progress=None, identity_weight: float = 0.0, identity_batch: int = 64) -> list[float]:
    """Train ``pipe.text_encoder`` in place; returns the loss curve (the image-text loss only)."""
    te, tok = pipe.text_encoder, pipe.tokenizer
    dim = te.config.hidden_size
    img_enc = _ImageEncoder(dim)
    proj = nn.Linear(dim, dim, bias=False)
    log_temp = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    params = list(te.parameters()) + list(img_enc.parameters()) + list(proj.parameters()) + [log_temp]
    if identity_weight:  # created only then: an extra init would shift the global RNG of the shipped recipe
        proj_id = nn.Linear(dim, dim, bias=False)  # its own head: "no concept" and "which word" live apart
        params += list(proj_id.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    te.train()
    losses = []
    for _ in range(steps):
        images, captions = data.batch(rng, batch_size, uncond_p=0.0)
        labels = [_caption_labels(c) for c in captions]
        # what each image truly shows (the caption may omit the colour; the image never does);
        # distractor captions name no concept and show none (-1)
        img_concept = np.array(data.last_concepts)
        true_colour = np.array(data.last_colours)
        pos = torch.zeros(len(captions), len(captions))
        for i, (concept, colour) in enumerate(labels):
            ok = img_concept == (-1 if concept is None else concept)
            if colour is not None and concept is not None:
                ok &= true_colour == colour
            pos[i] = torch.from_numpy(ok.astype(np.float32))
        ids = tok(captions, padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
        t = F.normalize(proj(te(ids).pooler_output), dim=-1)
        v = F.normalize(img_enc(images), dim=-1)
        logits = t @ v.T * log_temp.exp().clamp(max=100)
        loss_t = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
        pos_i = pos.T
        loss_i = -(pos_i / pos_i.sum(1, keepdim=True).clamp(min=1) * F.log_softmax(logits.T, 1)).sum(1).mean()
        loss = (loss_t + loss_i) / 2
        total = loss
        if identity_weight:
            va, vb = identity_views(data, rng, identity_batch)
            za, zb = (F.normalize(proj_id(te(tok(v, padding="max_length", max_length=tok.model_max_length,
                                                 truncation=True, return_tensors="pt").input_ids).pooler_output), dim=-1)
                      for v in (va, vb))
            sim = za @ zb.T / 0.1
            target = torch.arange(len(va))
            total = loss + identity_weight * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress.update(1)
            if len(losses) % 25 == 0:
                progress.set_postfix(stage="text", loss=f"{np.mean(losses[-25:]):.3f}")
    te.eval()
    return losses
