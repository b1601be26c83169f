"""Text-side helpers shared by the threat lab and the scanners: token spans of a word in a prompt,
and continuous ("soft") token embeddings spliced into the text encoder's input.

The soft-token splice hooks the encoder's input-embedding module (``get_input_embeddings()``), so it
works on any CLIP text encoder (transformers 5 flattened ``CLIPTextModel`` included).
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

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
