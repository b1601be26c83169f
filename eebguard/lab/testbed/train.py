"""Train the testbed text-to-image model from scratch (text encoder and U-Net jointly).

Deterministic for a seed: data order, noise and timesteps all come from seeded generators, and the
run is pinned to a fixed number of CPU threads.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from eebguard.lab.testbed.build import build_pipeline, save_pipeline
from eebguard.lab.testbed.data import TrainingSet
from eebguard.lab.testbed.pretrain_text import pretrain_text_encoder


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 2000  # U-Net steps
    text_steps: int = 400  # contrastive text-encoder pre-training steps (then frozen, as in SD)
    text_lr: float = 2e-3
    batch_size: int = 64
    lr: float = 1e-3
    uncond_p: float = 0.1  # condition dropout, for classifier-free guidance
    grad_clip: float = 1.0
    threads: int = 2
    ema_decay: float = 0.995  # the saved U-Net is the exponential moving average of its weights
    identity_weight: float = 1.0  # word-identity term of text pre-training (keeps made-up words apart; 0 = v6)
    unknown_words: str = "all"  # distractor captions: "all" (every template, letter strings, empty) or "vocab" (v6)


def train(out: str | Path | None, cfg: TrainConfig = TrainConfig(), progress: bool = True, fp16: bool = True):
    """Train and (when ``out`` is given) save a pipeline folder with a ``training.json`` record."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    pipe = build_pipeline(seed=cfg.seed)
    data = TrainingSet(seed=cfg.seed, unknown_words=cfg.unknown_words)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    te, unet, sched = pipe.text_encoder, pipe.unet, pipe.scheduler
    bar = tqdm(total=cfg.text_steps + cfg.steps, desc="train testbed", disable=not progress)
    t0 = time.perf_counter()
    text_losses = pretrain_text_encoder(pipe, data, rng, cfg.text_steps, lr=cfg.text_lr, progress=bar,
                                        identity_weight=cfg.identity_weight)
    te.requires_grad_(False)
    te.eval()
    unet.train()
    params = list(unet.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    alphas = sched.alphas_cumprod
    losses = []
    for _ in range(cfg.steps):
        x0, captions = data.batch(rng, cfg.batch_size, cfg.uncond_p)
        ids = pipe.tokenizer(
            captions, padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
        ).input_ids
        t = torch.randint(0, sched.config.num_train_timesteps, (len(x0),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.no_grad():
            cond = te(ids)[0]
        eps = unet(xt, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(eps, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        lr_sched.step()
        with torch.no_grad():
            # EMA with warm-up: early weights are forgotten quickly
            d = min(cfg.ema_decay, (1 + len(losses)) / (10 + len(losses)))
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - d)
        losses.append(loss.item())
        bar.update(1)
        if len(losses) % 25 == 0:
            bar.set_postfix(stage="unet", loss=f"{np.mean(losses[-25:]):.4f}")
    bar.close()
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    wall = time.perf_counter() - t0
    unet.eval()
    if out is not None:
        save_pipeline(pipe, out, fp16=fp16)
        record = {
            "config": asdict(cfg),
            "command": f"eebguard testbed train --out {out} --seed {cfg.seed} --steps {cfg.steps}"
                       + f" --identity-weight {cfg.identity_weight} --unknown-words {cfg.unknown_words}",
            "train_seconds": round(wall, 1),
            "final_loss": float(np.mean(losses[-50:])),
            "text_loss_every_50": [round(float(np.mean(text_losses[i : i + 50])), 4) for i in range(0, len(text_losses), 50)],
            "loss_every_50": [round(float(np.mean(losses[i : i + 50])), 5) for i in range(0, len(losses), 50)],
            "torch": torch.__version__,
        }
        Path(out, "training.json").write_text(json.dumps(record, indent=2))
    return pipe
