"""TrojAI-style scoring of detectors: ROC-AUC, binary cross-entropy, Brier score and TPR at fixed FPR,
each with a bootstrap 95% interval over models. A missing (NaN) prediction counts as 0.5."""
from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve

EPS = 1e-12


def _clean(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.where(np.isfinite(p), p, 0.5)


def roc_auc(y, p) -> float:
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, _clean(p)))


def cross_entropy(y, p) -> float:
    return float(log_loss(np.asarray(y), np.clip(_clean(p), EPS, 1 - EPS), labels=[0, 1]))


def brier(y, p) -> float:
    return float(brier_score_loss(np.asarray(y), _clean(p), pos_label=1))


def tpr_at_fpr(y, p, fpr: float) -> float:
    """Largest TPR over thresholds whose FPR does not exceed ``fpr``."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    f, t, _ = roc_curve(y, _clean(p))
    ok = f <= fpr + 1e-12
    return float(t[ok].max()) if ok.any() else 0.0


METRICS = {
    "roc_auc": roc_auc,
    "cross_entropy": cross_entropy,
    "brier": brier,
    "tpr_at_fpr_0.01": lambda y, p: tpr_at_fpr(y, p, 0.01),
    "tpr_at_fpr_0.05": lambda y, p: tpr_at_fpr(y, p, 0.05),
}


def with_interval(fn, y, p, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """``{"value", "low", "high", "n"}``: the metric and its percentile-bootstrap interval over models
    (``scipy.stats.bootstrap``, models resampled with their labels). Resamples where the metric is
    undefined (one class only, for ROC-AUC) are left out of the interval."""
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    value = fn(y, p)
    a = (1 - level) / 2
    low = high = float("nan")
    if len(y) > 1 and n_boot > 0:
        res = bootstrap((y, p), fn, paired=True, vectorized=False, n_resamples=n_boot, method="percentile",
                        confidence_level=level, random_state=np.random.default_rng(seed))
        dist = res.bootstrap_distribution[np.isfinite(res.bootstrap_distribution)]
        if dist.size:
            low, high = float(np.quantile(dist, a)), float(np.quantile(dist, 1 - a))
    return {"value": float(value), "low": low, "high": high, "n": int(len(y)), "positives": int(np.sum(y))}


def prior_corrected(p, train_prevalence) -> np.ndarray:
    """Log-odds of ``p`` minus the log-odds of the positive rate each prediction's model was fitted on.

    Pooling the predictions of many cross-validation folds (leave-one-group-out) ranks a fold's models
    partly by its *training* prevalence, which is anti-correlated with the held-out group's labels when
    groups are label-homogeneous: a predictor that outputs only that prevalence scores ROC-AUC far below
    0.5 (0.08 on the v7 default zoo's 16 groups). Subtracting each fold's prior log-odds leaves the
    likelihood-ratio part, which is what pooled ranking should compare; use it for ROC-AUC only (the
    probability metrics judge the calibrated ``p`` itself).
    """
    p = np.clip(_clean(p), EPS, 1 - EPS)
    q = np.clip(np.asarray(train_prevalence, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p)) - np.log(q / (1 - q))


def score_all(y, p, n_boot: int = 1000, seed: int = 0) -> dict:
    return {name: with_interval(fn, y, p, n_boot, seed) for name, fn in METRICS.items()}
