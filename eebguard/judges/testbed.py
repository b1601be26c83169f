"""The testbed judge: scikit-learn classifiers for the testbed's digits, shapes and colours.

Two models, fitted with scikit-learn and stored as plain arrays (npz + JSON, never pickle):

* concept: an ``MLPClassifier`` over the 16x16 luminance image -> 14 concepts + ``none``;
* colour: a multinomial ``LogisticRegression`` over foreground chromaticity -> white/red/green/blue/yellow.

Inference runs the stored weights in numpy (or torch, differentiably, for soft-trigger search).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.judges.base import JUDGES, Judge
from eebguard.paths import data_path
from eebguard.testbed.concepts import ATTRIBUTES, JUDGE_CLASSES

DEFAULT_PATH = "judge/testbed"


def luminance(images: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] in [-1,1] -> [N, 256] channel-mean brightness in [0,1] at 16x16 (the mean, unlike the
    max, is not biased upward by per-channel sampling noise)."""
    x = (images.float() + 1) / 2
    if x.shape[-1] != 16:
        x = F.adaptive_avg_pool2d(x, 16)
    return x.mean(1).flatten(1)


def concept_features(images: torch.Tensor) -> torch.Tensor:
    """What the concept classifier sees: the luminance image plus the foreground chromaticity (white
    digits vs coloured shapes is a cue a noisy silhouette alone can miss)."""
    return torch.cat([luminance(images), chroma(images)], dim=1)


def chroma(images: torch.Tensor) -> torch.Tensor:
    """Brightness-weighted mean colour of the foreground, normalised by its largest channel: [N, 3]."""
    x = ((images.float() + 1) / 2).clamp(0, 1)
    if x.shape[-1] != 16:
        x = F.adaptive_avg_pool2d(x, 16)
    lum = x.amax(1, keepdim=True)
    w = (lum - 0.25).clamp(min=0)
    mean = (x * w).sum((2, 3)) / (w.sum((2, 3)) + 1e-6)
    return mean / (mean.amax(1, keepdim=True) + 1e-6)


@JUDGES.register
class TestbedJudge(Judge):
    """Digit/shape/colour judge for the testbed (MLP + logistic regression, stored as arrays)."""

    name = "testbed"
    concepts = JUDGE_CLASSES
    attributes = ATTRIBUTES
    differentiable = True
    exclusive = True

    def __init__(self, path: str | Path | None = None):
        base = Path(path) if path else data_path(DEFAULT_PATH)
        npz, meta = base.with_suffix(".npz"), base.with_suffix(".json")
        if not npz.is_file():
            raise FileNotFoundError(f"testbed judge parameters not found at {npz} (run `eebguard testbed fit-judge`)")
        with np.load(npz, allow_pickle=False) as z:
            self.params = {k: z[k].astype(np.float32) for k in z.files}
        self.meta = json.loads(meta.read_text()) if meta.is_file() else {}
        if tuple(self.meta.get("classes", JUDGE_CLASSES)) != JUDGE_CLASSES:
            raise ValueError("testbed judge parameters were fitted for other classes")
        self._torch = {k: torch.from_numpy(v) for k, v in self.params.items()}

    def logits_torch(self, images: torch.Tensor) -> torch.Tensor:
        p = {k: v.to(images.device) for k, v in self._torch.items()}
        z = (concept_features(images) - p["mean"]) / p["scale"]
        h = torch.relu(z @ p["W1"] + p["b1"])
        return h @ p["W2"] + p["b2"]

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        return torch.softmax(self.logits_torch(images.cpu()), dim=1).numpy()

    @torch.no_grad()
    def attribute_probabilities(self, images: torch.Tensor) -> np.ndarray:
        p = self._torch
        z = chroma(images.cpu()) @ p["cW"] + p["cb"]
        return torch.softmax(z, dim=1).numpy()

    def attribute(self, images: torch.Tensor) -> list[str]:
        return [self.attributes[i] for i in self.attribute_probabilities(images).argmax(1)]


def _augment(x: torch.Tensor, rng: np.random.Generator, copies: int, shift: bool) -> torch.Tensor:
    """Shifted, dimmed and noised copies: generated images are never pixel-perfect, and samplers
    leave per-channel speckle that must not turn a concept into "none"."""
    out = [x]
    for _ in range(copies):
        y = x
        if shift:
            dx, dy = rng.integers(-1, 2, size=2)
            y = torch.roll(y, shifts=(int(dy), int(dx)), dims=(2, 3))
        scale = torch.tensor(rng.uniform(0.6, 1.0, size=(len(x), 1, 1, 1)), dtype=torch.float32)
        sigma = torch.tensor(rng.uniform(0.0, 0.35, size=(len(x), 1, 1, 1)), dtype=torch.float32)
        y = (y + 1) * scale - 1 + sigma * torch.tensor(rng.normal(size=y.shape), dtype=torch.float32)
        out.append(y.clamp(-1, 1))
    return torch.cat(out)


def fit_testbed_judge(out: str | Path, seed: int = 0) -> dict:
    """Fit both models on one split of the data and report accuracy on a held-out split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    from eebguard.testbed.concepts import DIGIT_WORDS
    from eebguard.testbed.data import digits_images, digits_split, none_images, shapes_images

    rng = np.random.default_rng(seed)
    nd = len(DIGIT_WORDS)
    none_label = len(JUDGE_CLASSES) - 1
    colour_white = 0

    def assemble(digit_idx, shape_seed, n_shapes, none_seed, n_none, aug):
        xd, yd = digits_images(digit_idx)
        xs, ys, cs = shapes_images(n_shapes, seed=shape_seed)
        if aug:
            xd, yd = _augment(xd, rng, aug, shift=True), np.tile(yd, aug + 1)
            xs, ys, cs = _augment(xs, rng, 1, shift=False), np.tile(ys, 2), np.tile(cs, 2)
        xn = none_images(n_none, seed=none_seed)
        x = torch.cat([xd, xs, xn])
        y = np.concatenate([yd, nd + ys, np.full(n_none, none_label)])
        colour = np.concatenate([np.full(len(xd), colour_white), 1 + cs, np.full(n_none, -1)])
        return x, y, colour

    train_idx, test_idx = digits_split(seed)
    xtr, ytr, ctr = assemble(train_idx, 20_000 + seed, 4000, 21_000 + seed, 1500, aug=3)
    xte, yte, cte = assemble(test_idx, 30_000 + seed, 1200, 31_000 + seed, 400, aug=0)

    ftr = concept_features(xtr).numpy()
    mean, scale = ftr.mean(0), ftr.std(0) + 1e-3
    mlp = MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=200, random_state=seed, early_stopping=False)
    mlp.fit((ftr - mean) / scale, ytr)
    fg = ctr >= 0
    lr = LogisticRegression(C=10.0, max_iter=2000)
    lr.fit(chroma(xtr[fg]).numpy(), ctr[fg])

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out.with_suffix(".npz"),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        W1=mlp.coefs_[0].astype(np.float32),
        b1=mlp.intercepts_[0].astype(np.float32),
        W2=mlp.coefs_[1].astype(np.float32),
        b2=mlp.intercepts_[1].astype(np.float32),
        cW=lr.coef_.T.astype(np.float32),
        cb=lr.intercept_.astype(np.float32),
    )
    # held-out accuracy is measured through the stored arrays, i.e. exactly what ships
    out.with_suffix(".json").write_text(json.dumps({"classes": list(JUDGE_CLASSES)}))
    judge = TestbedJudge(out)
    pred = judge.probabilities(xte).argmax(1)
    per_class = {c: float((pred[yte == i] == i).mean()) for i, c in enumerate(JUDGE_CLASSES)}
    cpred = judge.attribute_probabilities(xte[cte >= 0]).argmax(1)
    report = {
        "classes": list(JUDGE_CLASSES),
        "attributes": list(ATTRIBUTES),
        "seed": seed,
        "command": f"eebguard testbed fit-judge --out {out} --seed {seed}",
        "train_size": int(len(xtr)),
        "heldout_size": int(len(xte)),
        "heldout_accuracy": float((pred == yte).mean()),
        "heldout_accuracy_per_class": per_class,
        "heldout_colour_accuracy": float((cpred == cte[cte >= 0]).mean()),
        "sklearn_agreement": float((mlp.predict((concept_features(xte).numpy() - mean) / scale) == pred).mean()),
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    return report
