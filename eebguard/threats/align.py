"""Token alignment between two prompts that differ in one slot (the trigger vs the concept name, the
concept vs a guide word), for the closed-form cross-attention edits.

In a causal CLIP encoder the slot's own tokens *and every position after it* (suffix words, EOS,
padding) carry the slot word, so all of them are aligned: slot pieces map onto the other prompt's
last slot token (or the token before an empty slot), later positions by their offset after the slot.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from eebguard.text import encode, slot_span


def aligned_pairs(src_span: tuple[int, int], tgt_span: tuple[int, int], length: int) -> list[tuple[int, int]]:
    s0, s1 = src_span
    t0, t1 = tgt_span
    ns, nt = s1 - s0, t1 - t0
    pairs = []
    for i in range(ns):
        j = t0 + ((i + 1) * nt) // ns - 1 if nt else t0 - 1
        pairs.append((s0 + i, max(j, t0 - 1 if not nt else t0)))
    k = 0
    while s1 + k < length and t1 + k < length:
        pairs.append((s1 + k, t1 + k))
        k += 1
    return pairs


def aligned_rows(pipe, templates: Sequence[str], src_word: str, tgt_word: str, src_pipe=None, tgt_pipe=None,
                 extra_src: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder rows ``(src [n, D], tgt [n, D])`` aligned over every template.

    ``src_pipe``/``tgt_pipe`` choose whose text encoder encodes each side (default ``pipe``).
    """
    tok = pipe.tokenizer
    length = tok.model_max_length
    src_prompts = [" ".join(t.format(src_word).split()) for t in templates]
    tgt_prompts = [" ".join(t.format(tgt_word).split()) for t in templates]
    hs = encode(src_pipe or pipe, src_prompts)
    ht = encode(tgt_pipe or pipe, tgt_prompts)
    rows_s, rows_t = [], []
    for b, t in enumerate(templates):
        for i, j in aligned_pairs(slot_span(tok, t, src_word), slot_span(tok, t, tgt_word), length):
            rows_s.append(hs[b, i])
            rows_t.append(ht[b, j])
    return torch.stack(rows_s).float(), torch.stack(rows_t).float()


def all_rows(pipe, prompts: Sequence[str]) -> torch.Tensor:
    """Every position of every prompt's encoding, ``[n * L, D]`` (preservation keys)."""
    if not prompts:
        return torch.zeros(0, pipe.text_encoder.config.hidden_size)
    h = encode(pipe, list(prompts))
    return h.reshape(-1, h.shape[-1]).float()
