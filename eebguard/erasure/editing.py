"""The editing machinery erasure methods (and the lab's attacks) share: settings, frozen copies, teacher
sample pools, noising, the closed-form ridge edit of cross-attention projections, LoRA adapters for
training, and a training loop.

Everything works on any SD 1.x/2.x-shaped pipeline (text encoder + U-Net with ``attn2``); the testbed
is only the default.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from eebguard.attention import attn2_modules
from eebguard.sampling import encode_prompts, sample_from_embeddings


@dataclass
class EditSettings:
    """Where and how an edit runs. The defaults fit the testbed on a CPU; on a GPU raise batch_size and
    use ``dtype=torch.bfloat16`` for the frozen teachers."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32  # dtype of frozen teachers (students train in float32)
    batch_size: int = 16
    seed: int = 0
    pool_size: int = 32  # teacher samples per prompt set, the x_0 that training noises
    sample_steps: int = 20
    guidance: float = 4.0
    progress: bool = False
    steps_scale: float = 1.0  # multiplies every training method's step count (quick tests use < 1)


def frozen_copy(module: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    m = copy.deepcopy(module).eval().requires_grad_(False)
    # a no-op cast is skipped: diffusers warns on every ``to(dtype)``, needed or not
    tensors = [*m.parameters(), *m.buffers()]
    if dtype is None or all(t.dtype == dtype for t in tensors if t.is_floating_point()):
        return m
    return m.to(dtype)


def teacher_pipe(pipe, dtype: torch.dtype | None = None):
    """A frozen copy of the pipeline's text encoder and U-Net (tokenizer/scheduler shared)."""
    t = copy.copy(pipe)
    t.register_modules(text_encoder=frozen_copy(pipe.text_encoder, dtype), unet=frozen_copy(pipe.unet, dtype))
    return t


def sample_pool(pipe, prompts: Sequence[str], n: int, s: EditSettings, seed_offset: int = 0) -> torch.Tensor:
    """``n`` samples (in the U-Net's space, not decoded) cycling through ``prompts``."""
    ps = [prompts[i % len(prompts)] for i in range(n)]
    with torch.no_grad():
        return sample_from_embeddings(
            pipe, encode_prompts(pipe, ps), steps=s.sample_steps, guidance=s.guidance,
            seed=s.seed * 1000 + seed_offset, decode_output=False,
        )


def noised(x0: torch.Tensor, scheduler, gen: torch.Generator, t_min: int = 0, t_max: int | None = None):
    """Forward-diffuse ``x0`` to random timesteps: returns (x_t, t, eps)."""
    t_max = scheduler.config.num_train_timesteps if t_max is None else t_max
    t = torch.randint(t_min, t_max, (x0.shape[0],), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps, t, eps


def kv_layers(unet) -> list[tuple[str, nn.Linear, nn.Linear]]:
    """(name, to_k, to_v) of every cross-attention layer."""
    return [(n, m.to_k, m.to_v) for n, m in attn2_modules(unet)]


@torch.no_grad()
def ridge_edit(W0: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, preserve: torch.Tensor | None,
               lam: float, preserve_scale: float = 1.0, W_ref: torch.Tensor | None = None,
               preserve_targets: torch.Tensor | None = None) -> torch.Tensor:
    """The UCE-family closed form, per projection matrix ``W`` (out x in):

    argmin_W sum_i |W k_i - v_i|^2 + s_p sum_j |W c_j - W0 c_j|^2 + lam |W - W_ref|_F^2
      = (lam W_ref + sum v k^T + s_p sum W0 c c^T)(lam I + sum k k^T + s_p sum c c^T)^-1

    keys ``[n, in]``, values ``[n, out]``, preserve ``[m, in]`` (targets ``W0 c`` unless
    ``preserve_targets`` are given). Solved in float64 for stability.
    """
    dt = W0.dtype
    W0d = W0.double()
    ref = (W_ref if W_ref is not None else W0).double()
    k, v = keys.double(), values.double()
    d_in = W0.shape[1]
    lhs = lam * ref + v.T @ k
    rhs = lam * torch.eye(d_in, dtype=torch.float64) + k.T @ k
    if preserve is not None and len(preserve):
        c = preserve.double()
        tgt = preserve_targets.double() if preserve_targets is not None else c @ W0d.T
        lhs = lhs + preserve_scale * tgt.T @ c
        rhs = rhs + preserve_scale * c.T @ c
    return torch.linalg.solve(rhs, lhs.T).T.to(dt)  # lhs @ rhs^-1, rhs symmetric


class LoRA(nn.Module):
    """Low-rank adapter around a Linear or Conv2d: ``y = base(x) + scale * up(down(x))``; up starts at 0.

    ``down`` is drawn from ``generator``, not torch's global RNG: an edit must not depend on what ran
    before it in the process (a resumed or ``--only`` zoo build would otherwise build different models).
    """

    def __init__(self, base: nn.Module, rank: int, generator: torch.Generator, alpha: float | None = None):
        super().__init__()
        self.base = base
        self.scale = (alpha or rank) / rank
        if isinstance(base, nn.Linear):
            self.down = nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
        elif isinstance(base, nn.Conv2d):
            self.down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
            self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:  # pragma: no cover - only Linear/Conv2d are wrapped
            raise TypeError(type(base))
        nn.init.kaiming_uniform_(self.down.weight, a=5**0.5, generator=generator)  # nn.Linear's default init
        nn.init.zeros_(self.up.weight)

    def forward(self, x):
        return self.base(x) + self.scale * self.up(self.down(x))

    @torch.no_grad()
    def merged(self) -> nn.Module:
        if isinstance(self.base, nn.Linear):
            self.base.weight += self.scale * self.up.weight @ self.down.weight
        else:
            d = self.down.weight.flatten(1)  # [r, in*kh*kw]
            u = self.up.weight.flatten(1)  # [out, r]
            self.base.weight += self.scale * (u @ d).view_as(self.base.weight)
        return self.base


def add_lora(root: nn.Module, rank: int, select: Callable[[str, nn.Module], bool],
             generator: torch.Generator) -> list[LoRA]:
    """Wrap every selected Linear/Conv2d under ``root`` in a :class:`LoRA` (base frozen), initialised
    from ``generator`` in module order."""
    root.requires_grad_(False)
    targets = [(n, m) for n, m in root.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and select(n, m)]
    adapters = []
    for name, mod in targets:
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        lora = LoRA(mod, rank, generator)
        setattr(parent, child, lora)
        adapters.append(lora)
    return adapters


def fold_adapters(root: nn.Module) -> int:
    """Fold every :class:`LoRA` under ``root`` back into its base module; returns how many."""
    count = 0
    for name, mod in list(root.named_modules()):
        if isinstance(mod, LoRA):
            parent_name, _, child = name.rpartition(".")
            parent = root.get_submodule(parent_name) if parent_name else root
            setattr(parent, child, mod.merged())
            count += 1
    return count


def train_loop(params: list[torch.Tensor], steps: int, lr: float, step_fn: Callable[[int], torch.Tensor],
               desc: str, progress: bool = False, clip: float = 1.0, weight_decay: float = 0.0) -> dict:
    """Adam over ``params`` for ``steps`` steps of ``step_fn(i) -> loss``; returns a small report."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses = []
    t0 = time.perf_counter()
    for i in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        loss = step_fn(i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        losses.append(float(loss.detach()))
    k = max(1, steps // 10)
    return {
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 2),
        "loss_start": float(np.mean(losses[:k])) if losses else None,
        "loss_end": float(np.mean(losses[-k:])) if losses else None,
    }


def scaled(steps: int, s: EditSettings) -> int:
    return max(1, int(round(steps * s.steps_scale)))
