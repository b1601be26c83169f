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
