"""Fitting the testbed's concept judge (``eebguard testbed fit-judge``): a small MLP on concept features
for the ten digits, shapes and "none", and a logistic colour model, both saved as plain arrays."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from eebguard.judges.testbed import TestbedJudge, chroma, concept_features
from eebguard.testbed.concepts import ATTRIBUTES, JUDGE_CLASSES


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
    from eebguard.lab.testbed.data import digits_images, digits_split, none_images, shapes_images

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
