"""Vocabulary-wide screening helpers: encode every token in a slot template, batched, once per model."""
from __future__ import annotations

import numpy as np
import torch

from eebguard.sampling import model_device
from eebguard.scanners.context import ScanContext
from eebguard.text import ids_batch


def vocabulary(ctx: ScanContext) -> np.ndarray:
    """Token ids screened: the whole vocabulary (the first ``vocab_limit`` ids in smoke runs) but special tokens."""
    if "vocab" not in ctx.cache:
        n = ctx.suspect.text_encoder.get_input_embeddings().weight.shape[0]
        if ctx.settings.vocab_limit is not None:
            n = min(n, int(ctx.settings.vocab_limit))
        ids = np.array([i for i in range(n) if i not in ctx.special_ids()])
        ctx.cache["vocab"] = ids
    return ctx.cache["vocab"]


@torch.no_grad()
def vocab_rows(ctx: ScanContext, which: str, prefix: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """Encoder rows of every vocabulary token in the first slot template: the token's own row and the EOS
    row (causal CLIP carries the slot word into EOS). ``prefix`` puts token ids before the candidate in
    the slot (the candidate as the next piece of a partial trigger). ``which``: "suspect", "reference" or
    "counterfactual". ``[V, D]`` each, float32 on CPU."""
    if which == "counterfactual" and ctx.counterfactual_text_encoder_unchanged():
        which = "reference"
    if which == "suspect" and ctx.text_encoder_unchanged():
        which = "reference"  # same weights, same rows: one vocabulary pass serves both sides
    pipe = {"suspect": ctx.suspect, "reference": ctx.reference, "counterfactual": ctx.counterfactual}[which]
    if prefix:  # a partial trigger's screen: only the last one is kept ([V, D] twice per prefix on SD)
        key = (which, tuple(int(i) for i in prefix))
        last = ctx.cache.get("vocab_rows_after")
        if last is None or last[0] != key:
            last = ctx.cache["vocab_rows_after"] = (key, _encode_vocab(ctx, pipe, key[1]))
        return last[1]
    key = f"vocab_rows_{which}"
    if key in ctx.cache:
        return ctx.cache[key]
    shared_key = ("vocab_rows", ctx.prompts.templates[0]) + ((id(pipe),) if which == "counterfactual" else ())
    if which != "suspect" and shared_key in ctx.shared:
        ctx.cache[key] = ctx.shared[shared_key]
        return ctx.cache[key]
    out = _encode_vocab(ctx, pipe, ())
    ctx.cache[key] = out
    if which != "suspect":  # the same for every suspect
        ctx.shared[shared_key] = out
    return out


def baseline(ctx: ScanContext) -> str:
    """What a suspect is compared with: "counterfactual" when the scan has one, else "reference"."""
    return "counterfactual" if ctx.counterfactual is not None else "reference"


def baseline_pipe(ctx: ScanContext):
    return ctx.counterfactual if ctx.counterfactual is not None else ctx.reference


@torch.no_grad()
def _encode_vocab(ctx: ScanContext, pipe, prefix: tuple[int, ...]) -> dict[str, torch.Tensor]:
    tpl = ctx.templates()[0]
    vocab = vocabulary(ctx)
    dev = model_device(pipe)
    slot_pos = tpl.slot_start() + len(prefix)
    eos_pos = min(slot_pos + 1 + len(tpl.suffix), ctx.tokenizer.model_max_length - 1)
    # the causal encoder's rows up to EOS do not depend on the padding after it: a partial trigger's
    # screen encodes only that far (several times faster); the cached screen keeps the padded batch,
    # whose float rounding the recorded scans hold
    width = eos_pos + 1 if prefix else ctx.tokenizer.model_max_length
    slot_rows, eos_rows = [], []
    bs = ctx.settings.vocab_batch
    for i in range(0, len(vocab), bs):
        ids = ids_batch(ctx.tokenizer, [tpl], [[*prefix, int(v)] for v in vocab[i : i + bs]])[:, :width].to(dev)
        h = pipe.text_encoder(ids)[0].float()
        slot_rows.append(h[:, slot_pos].cpu())
        eos_rows.append(h[:, eos_pos].cpu())
    return {"slot": torch.cat(slot_rows), "eos": torch.cat(eos_rows)}


@torch.no_grad()
def concept_rows(ctx: ScanContext, which: str = "reference") -> dict[str, torch.Tensor]:
    """The concept name's slot (last name token) and EOS rows in the first template, ``[D]`` each."""
    key = f"concept_rows_{which}"
    if key in ctx.cache:
        return ctx.cache[key]
    pipe = ctx.suspect if which == "suspect" else ctx.reference
    tpl = ctx.templates()[0]
    name = ctx.concept_ids()
    ids = ids_batch(ctx.tokenizer, [tpl], [name]).to(model_device(pipe))
    h = pipe.text_encoder(ids)[0][0].float().cpu()
    last = tpl.slot_start() + len(name) - 1
    eos = min(tpl.slot_start() + len(name) + len(tpl.suffix), ctx.tokenizer.model_max_length - 1)
    out = {"slot": h[last], "eos": h[eos]}
    ctx.cache[key] = out
    return out


def centered_cos(a: torch.Tensor, b: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Cosine after removing the vocabulary mean: raw CLIP rows share a large common component."""
    a, b = a - mu, b - mu
    return torch.nn.functional.cosine_similarity(a, b.expand_as(a) if b.dim() == 1 else b, dim=-1)


def top_k(scores: np.ndarray, vocab: np.ndarray, k: int, exclude: set[int]) -> tuple[list[int], list[float]]:
    order = np.argsort(-scores)
    ids, vals = [], []
    for j in order:
        if int(vocab[j]) in exclude:
            continue
        ids.append(int(vocab[j]))
        vals.append(float(scores[j]))
        if len(ids) >= k:
            break
    return ids, vals


def approach(s_rows: torch.Tensor, r_rows: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log(|r - target| / |s - target|) per row: > 0 when the suspect's row moved toward the target.
    Distances, unlike cosines, need no centring, and the log ratio is scale-free."""
    ds = (s_rows - target).norm(dim=-1)
    dr = (r_rows - target).norm(dim=-1)
    return torch.log(dr.clamp(min=1e-8) / ds.clamp(min=1e-8))
