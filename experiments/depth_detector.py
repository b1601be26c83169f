"""Would a detector that knows the attack depths beat extra-trees over the whole schema? Leave-one-zoo-out.

On the fifth zoo each depth's best single feature separated that depth's survivors from the unplanted
models better (0.92-1.00) than the shipped replay detector did per depth (0.76-0.86), which suggests a
depth-aware recipe: for each depth, a one-feature logistic model of "this depth's survivors against
every negative", and the model's probability the largest of the per-depth ones. This compares, each
zoo held out in turn and pooled over the held-out predictions:

- ``trees``: extra-trees over the whole schema (the shipped ``replay`` recipe);
- ``depth-max, fixed``: the per-depth features fixed before the fifth zoo existed (data
  ``soft.reach_random``, deep ``loc.unet_drop``, shallow ``replay.gain``, surface ``te.approach_max``);
- ``depth-max, chosen``: each depth's feature chosen on the training zoos as the fixed ones were chosen
  on the four (the best single feature, ``eebguard zoo features``);
- ``mean of trees and depth-max, fixed``.

The fifth zoo is in the rotation (no zoo is left that nobody looked at), so this answers which recipe to
try next, not how well it would do.

    python experiments/depth_detector.py --zoo Z1 --zoo Z2 ... [--json PATH]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from eebguard.lab.tables import table, write

DEPTHS = ("surface", "shallow", "deep", "data")
FIXED = {"data": "soft.reach_random", "deep": "loc.unet_drop", "shallow": "replay.gain", "surface": "te.approach_max"}


def fit_depth_max(rows, names, chosen: bool) -> list:
    """Per depth with a survivor in ``rows``: (feature column, its median, one-feature logistic model)."""
    from sklearn.linear_model import LogisticRegression

    from eebguard.lab.evaluate.evaluate import labels, matrix
    from eebguard.lab.evaluate.scanner_quality import feature_auroc

    y, X = labels(rows), matrix(rows, names)
    # chosen as the fixed ones were: each depth's best single feature (`eebguard zoo features`)
    best = {d: v.get("best") for d, v in feature_auroc(rows).items()} if chosen else FIXED
    models = []
    for d in DEPTHS:
        pos = np.array([bool(r["planted"] and r["label"] and r["attack"] == d) for r in rows])
        idx = pos | (y == 0)
        if not pos.any() or best.get(d) is None:
            continue
        j = names.index(best[d])
        med = float(np.nanmedian(X[:, j])) if not np.isnan(X[:, j]).all() else 0.0
        col = np.where(np.isnan(X[idx, j]), med, X[idx, j]).reshape(-1, 1)
        models.append((j, med, LogisticRegression(C=1.0).fit(col, pos[idx].astype(int))))
    return models


def predict_depth_max(models, X) -> np.ndarray:
    ps = [m.predict_proba(np.where(np.isnan(X[:, j]), med, X[:, j]).reshape(-1, 1))[:, 1] for j, med, m in models]
    return np.max(ps, axis=0)


def main(argv=None) -> int:
    from eebguard.detect.estimator import TREES_PARAMS
    from eebguard.lab.evaluate.evaluate import fit_detector, labels, load_rows, matrix
    from eebguard.lab.evaluate.metrics import score_all
    from eebguard.scanners import feature_names

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", action="append", required=True, help="a zoo for the rotation (repeatable)")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--json", default=None, help="results file (default experiments/results/depth_detector.json)")
    a = ap.parse_args(argv)
    names = feature_names()
    rows = {z: load_rows([z]) for z in a.zoo}
    preds: dict[str, list] = {k: [] for k in ("trees", "depth-max, fixed", "depth-max, chosen",
                                               "mean of trees and depth-max, fixed")}
    ys, out = [], []
    for z in a.zoo:
        train = [r for o in a.zoo if o != z for r in rows[o]]
        X, y = matrix(rows[z], names), labels(rows[z])
        p_trees = fit_detector(train, names, **TREES_PARAMS).predict_proba(X)[:, 1]
        p_fixed = predict_depth_max(fit_depth_max(train, names, False), X)
        p_chosen = predict_depth_max(fit_depth_max(train, names, True), X)
        got = {"trees": p_trees, "depth-max, fixed": p_fixed, "depth-max, chosen": p_chosen,
               "mean of trees and depth-max, fixed": (p_trees + p_fixed) / 2}
        ys.append(y)
        for k, p in got.items():
            preds[k].append(p)
            s = score_all(y, p, a.boot, 0)
            out.append({"recipe": k, "scored": Path(z).name, "models": len(y), "positives": int(y.sum()),
                        **{m: s[m]["value"] for m in ("roc_auc", "cross_entropy", "brier")}})
    y = np.concatenate(ys)
    for k, ps in preds.items():
        s = score_all(y, np.concatenate(ps), a.boot, 0)
        out.append({"recipe": k, "scored": "pooled", "models": len(y), "positives": int(y.sum()),
                    **{m: s[m]["value"] for m in ("roc_auc", "cross_entropy", "brier")},
                    "roc_auc_ci": [s["roc_auc"]["low"], s["roc_auc"]["high"]]})
    print(table(out, ["recipe", "scored", "models", "positives", "roc_auc", "cross_entropy", "brier"]))
    print("\nwrote", write("depth_detector", {"zoos": a.zoo, "fixed": FIXED, "rows": out}, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
