"""Text-side helpers shared by the threat lab and the scanners: token spans of a word in a prompt,
slot templates as token ids, and continuous ("soft") token embeddings spliced into the text encoder's
input.

The soft-token splice hooks the encoder's input-embedding module (``get_input_embeddings()``), so it
works on any CLIP text encoder (transformers 5 flattened ``CLIPTextModel`` included).
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from eebguard.sampling import tokenize


def word_token_ids(tokenizer, word: str) -> list[int]:
    """BPE ids of ``word`` (no BOS/EOS). CLIP splits on whitespace first, so this is context-free."""
    return tokenizer(word, add_special_tokens=False).input_ids if word else []


def slot_span(tokenizer, template: str, word: str) -> tuple[int, int]:
    """Token positions ``[start, end)`` that ``word`` occupies in ``template.format(word)`` (BOS at 0)."""
    prefix = template.split("{}")[0].strip()
    start = 1 + len(word_token_ids(tokenizer, prefix))
    return start, start + len(word_token_ids(tokenizer, word))


def eos_position(tokenizer, prompt: str) -> int:
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    return len(ids) - 1


@contextmanager
def soft_tokens(text_encoder, positions: torch.Tensor, vectors: torch.Tensor):
    """Replace input embeddings at ``positions`` by ``vectors`` for every forward inside the block.

    ``positions``: bool mask ``[B, L]`` (or ``[L]``, shared by the batch). ``vectors``: ``[k, D]`` (the same
    k vectors for every row, filled in order into each row's k masked positions) or ``[B, k, D]``.
    Gradients flow to ``vectors``.
    """
    emb = text_encoder.get_input_embeddings()

    def hook(_module, _inp, out):
        mask = positions if positions.dim() == 2 else positions.unsqueeze(0).expand(out.shape[0], -1)
        mask = mask.to(out.device)
        vec = vectors.to(out.dtype)
        if vec.dim() == 2:  # the same k vectors for every row; mask order is row-major
            vec = vec.unsqueeze(0).expand(out.shape[0], -1, -1)
        out = out.clone()
        out[mask] = vec.reshape(-1, vec.shape[-1])
        return out

    handle = emb.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def encode_with_soft(pipe, prompts: Sequence[str], positions: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Text conditioning for ``prompts`` with soft vectors at ``positions`` (differentiable)."""
    ids = tokenize(pipe, prompts).to(vectors.device)
    with soft_tokens(pipe.text_encoder, positions, vectors):
        return pipe.text_encoder(ids)[0]


def encode(pipe, prompts: Sequence[str], grad: bool = False) -> torch.Tensor:
    """Text conditioning with or without gradients through the text encoder."""
    dev = next(pipe.text_encoder.parameters()).device
    ids = tokenize(pipe, prompts).to(dev)
    if grad:
        return pipe.text_encoder(ids)[0]
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


@dataclass
class TemplateIds:
    """A slot template as token ids: ``[BOS] prefix <slot> suffix [EOS] pad...``."""

    prefix: list[int]
    suffix: list[int]

    def build(self, slot: list[int], length: int, eos: int, pad: int) -> list[int]:
        ids = self.prefix + slot + self.suffix
        ids = ids[: length - 1] + [eos]
        return ids + [pad] * (length - len(ids))

    def slot_start(self) -> int:
        return len(self.prefix)


def template_ids(tokenizer, template: str) -> TemplateIds:
    pre, _, post = template.partition("{}")
    enc = lambda s: tokenizer(s.strip(), add_special_tokens=False).input_ids if s.strip() else []  # noqa: E731
    return TemplateIds([tokenizer.bos_token_id] + enc(pre), enc(post))


def pad_id(tokenizer) -> int:
    """The id prompts are padded with (SD 1.x pads with EOS, SD 2.x with its own pad token)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def ids_batch(tokenizer, templates: list[TemplateIds], slots: list[list[int]]) -> torch.Tensor:
    """Row i: template ``i % len(templates)`` with ``slots[i]`` in its slot."""
    L = tokenizer.model_max_length
    eos, pad = tokenizer.eos_token_id, pad_id(tokenizer)
    return torch.tensor([templates[i % len(templates)].build(s, L, eos, pad) for i, s in enumerate(slots)])


def decoy_words(tokenizer, n: int, seed: int, exclude: Sequence[str] = ()) -> list[str]:
    """Random whole-word vocabulary tokens (not excluded words or their pieces): prompts with them teach
    an edit that *other* unknown words must keep behaving as before, so a trigger stays specific."""
    import re

    banned = set()
    for w in exclude:
        banned |= set(tokenizer(w, add_special_tokens=False).input_ids)
    vocab = tokenizer.get_vocab()
    words = sorted(w[:-4] for w, i in vocab.items()
                   if w.endswith("</w>") and re.fullmatch(r"[a-z]{2,10}", w[:-4]) and i not in banned)
    rng = np.random.default_rng(seed + 97)
    return [words[i] for i in rng.choice(len(words), size=min(n, len(words)), replace=False)]
