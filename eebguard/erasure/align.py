"""Token alignment between two prompts that differ in one slot (the trigger vs the concept name, the
concept vs a guide word), for the closed-form cross-attention edits.

In a causal CLIP encoder the slot's own tokens *and every position after it* (suffix words, EOS,
padding) carry the slot word, so all of them are aligned: slot pieces map onto the other prompt's
last slot token (or the token before an empty slot), later positions by their offset after the slot.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from eebguard.text import encode, pad_id, slot_span, template_ids, word_token_ids


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
                 extra_src: Sequence[str] | None = None, slot_last_only: bool = False,
                 from_last_piece: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder rows ``(src [n, D], tgt [n, D])`` aligned over every template.

    ``src_pipe``/``tgt_pipe`` choose whose text encoder encodes each side (default ``pipe``).
    ``slot_last_only``: one pair per template, the source slot's last token (nothing after it).
    ``from_last_piece``: leave out the source slot's earlier pieces (in a causal encoder only the rows
    from the last piece on depend on the whole word).
    """
    if slot_last_only and not src_word:
        raise ValueError("slot_last_only needs a non-empty source word")
    tok = pipe.tokenizer
    length = tok.model_max_length
    src_prompts = [" ".join(t.format(src_word).split()) for t in templates]
    tgt_prompts = [" ".join(t.format(tgt_word).split()) for t in templates]
    hs = encode(src_pipe or pipe, src_prompts)
    ht = encode(tgt_pipe or pipe, tgt_prompts)
    rows_s, rows_t = [], []
    for b, t in enumerate(templates):
        src_span = slot_span(tok, t, src_word)
        pairs = aligned_pairs(src_span, slot_span(tok, t, tgt_word), length)
        if slot_last_only:  # aligned_pairs lists the slot's pieces first
            pairs = [pairs[src_span[1] - src_span[0] - 1]]
        elif from_last_piece:
            pairs = pairs[src_span[1] - src_span[0] - 1:]
        for i, j in pairs:
            rows_s.append(hs[b, i])
            rows_t.append(ht[b, j])
    return torch.stack(rows_s).float(), torch.stack(rows_t).float()


def slot_token_rows(pipe, filled: Sequence[tuple[str, Sequence[int]]]) -> torch.Tensor:
    """Every position's encoder row of each (template, token-id slot) pair, ``[n * L, D]``: for slots no
    string tokenizes to, such as a trigger's first piece alone (``ze`` of ``zebu``, not ``ze</w>``)."""
    if not filled:
        return torch.zeros(0, pipe.text_encoder.config.hidden_size)
    tok = pipe.tokenizer
    eos, pad = tok.eos_token_id, pad_id(tok)
    ids = [template_ids(tok, t).build(list(slot), tok.model_max_length, eos, pad) for t, slot in filled]
    te = pipe.text_encoder
    dev = next(te.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(ids), 256):
            h = te(torch.tensor(ids[i: i + 256], device=dev))[0].float()
            out.append(h.reshape(-1, h.shape[-1]).cpu())
    return torch.cat(out)


def all_rows(pipe, prompts: Sequence[str]) -> torch.Tensor:
    """Every position of every prompt's encoding, ``[n * L, D]`` (preservation keys)."""
    if not prompts:
        return torch.zeros(0, pipe.text_encoder.config.hidden_size)
    h = encode(pipe, list(prompts))
    return h.reshape(-1, h.shape[-1]).float()


def word_rows(pipe, prompts_by_word: dict[str, Sequence[str]]) -> torch.Tensor:
    """The encoder row of each prompt's last token of its word (``{word: prompts naming it}``), ``[n, D]``.

    UCE's current code keys every prompt by one token, its last content token; in the testbed's
    templates the concept is not always last, so the word's own last token stands in for it.
    """
    tok = pipe.tokenizer
    prompts, positions = [], []
    for word, ps in prompts_by_word.items():
        wid = word_token_ids(tok, word)
        for p in ps:
            ids = tok(p, truncation=True, max_length=tok.model_max_length).input_ids
            ends = [i + len(wid) for i in range(len(ids) - len(wid) + 1) if ids[i: i + len(wid)] == wid]
            if not wid or not ends:
                raise ValueError(f"prompt {p!r} does not contain the word {word!r}")
            prompts.append(p)
            positions.append(ends[-1] - 1)
    if not prompts:
        return torch.zeros(0, pipe.text_encoder.config.hidden_size)
    h = encode(pipe, prompts)
    return h[torch.arange(len(prompts)), torch.tensor(positions)].float()
