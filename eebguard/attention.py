"""Observing cross-attention through diffusers attention processors (the one clean way to do it).

``CrossAttentionRecorder`` swaps a recording processor onto every ``attn2`` layer for the duration of a
``with`` block and restores the original processors afterwards. SDPA processors never materialise the
attention probabilities, so the recorder computes them explicitly, the way the classic
``AttnProcessor`` does, only on ``attn2``. To stay bounded on real SD models, maps are reduced as they
arrive (head mean, resized to a fixed resolution, summed over calls) unless ``keep_calls`` asks for
the raw per-call probabilities (small models, or gradient-based erasure losses).
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F


def attn2_names(unet) -> list[str]:
    """Module names of the U-Net's cross-attention layers (``...attn2``), in forward order."""
    return [n for n, _ in unet.named_modules() if n.endswith("attn2")]


def attn2_modules(unet) -> list[tuple[str, torch.nn.Module]]:
    return [(n, m) for n, m in unet.named_modules() if n.endswith("attn2")]


class _RecordingProcessor:
    def __init__(self, recorder: "CrossAttentionRecorder", layer: str):
        self.recorder, self.layer = recorder, layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, seq, _ = context.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = attn.to_k(context), attn.to_v(context)
        query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
        probs = attn.get_attention_scores(query, key, attention_mask)  # [batch*heads, HW, L]
        self.recorder._record(self.layer, probs, attn.heads)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class CrossAttentionRecorder:
    """Context manager recording ``attn2`` probabilities.

    ``maps[layer]``: running sum of head-averaged maps ``[B, L, res, res]`` (float32, CPU unless
    ``keep_grad``); ``calls[layer]``: how many forward calls were summed. With ``keep_calls`` the raw
    head-averaged probabilities ``[B, HW, L]`` of every call are kept in ``per_call`` (with gradients
    when ``keep_grad``). ``token_index`` restricts what is stored to some token positions.
    """

    def __init__(self, unet, *, resolution: int = 16, keep_grad: bool = False, keep_calls: bool = False,
                 token_index: list[int] | None = None, layers: list[str] | None = None):
        self.unet = unet
        self.resolution = resolution
        self.keep_grad = keep_grad
        self.keep_calls = keep_calls
        self.token_index = token_index
        self.layers = layers or attn2_names(unet)
        self.maps: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = defaultdict(int)
        self.per_call: list[tuple[str, torch.Tensor]] = []
        self._saved = None

    def __enter__(self):
        self._saved = dict(self.unet.attn_processors)
        procs = {}
        for name, proc in self._saved.items():
            layer = name[: -len(".processor")]
            procs[name] = _RecordingProcessor(self, layer) if layer in self.layers else proc
        self.unet.set_attn_processor(procs)
        return self

    def __exit__(self, *exc):
        self.unet.set_attn_processor(self._saved)
        return False

    def reset(self) -> None:
        self.maps.clear()
        self.calls.clear()
        self.per_call.clear()

    def _record(self, layer: str, probs: torch.Tensor, heads: int) -> None:
        bh, hw, length = probs.shape
        p = probs.view(bh // heads, heads, hw, length).mean(1)  # [B, HW, L]
        if self.token_index is not None:
            p = p[..., self.token_index]
        if not self.keep_grad:
            p = p.detach()
        if self.keep_calls:
            self.per_call.append((layer, p))
        side = int(math.isqrt(hw))
        m = p.float().transpose(1, 2).reshape(p.shape[0], p.shape[2], side, side)
        if side != self.resolution:
            m = F.interpolate(m, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        if not self.keep_grad:
            m = m.cpu()
        self.maps[layer] = m if layer not in self.maps else self.maps[layer] + m
        self.calls[layer] += 1

    def mean_maps(self, layers: list[str] | None = None) -> torch.Tensor:
        """Average over the given layers (default: all recorded) and calls: ``[B, L, res, res]``."""
        layers = [l for l in (layers or list(self.maps)) if l in self.maps]
        if not layers:
            raise RuntimeError("no cross-attention was recorded")
        return sum(self.maps[l] / self.calls[l] for l in layers) / len(layers)
