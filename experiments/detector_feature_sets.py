"""Choose the detector's feature set and estimator on the FIT zoo only (never on the held-out zoo).

Leave-one-group-out cross-validation over the fit zoo(s): a group is the models that share one attacked
(or clean) model, so the attacked weights a fold is scored on were never seen in fitting. Predictions of
all folds are pooled and scored once (ROC-AUC, cross-entropy, Brier, bootstrap 95% intervals). ROC-AUC
ranks the prior-corrected scores (``metrics.prior_corrected``: each fold's log-odds minus its training
prevalence's), since pooled raw probabilities rank an uninformative predictor far below 0.5; the table
also prints the raw pooled ROC-AUC, which earlier versions of this benchmark reported.

    python experiments/detector_feature_sets.py --zoo zoos/default-fresh [--json experiments/results/detector_feature_sets.json]
"""
from __future__ import annotations

import argparse

import numpy as np

from eebguard.detect.baselines import PROBE_FEATURES, T2ISHIELD_FEATURES
from eebguard.detect.estimator import DEFAULT_FEATURES
from eebguard.lab.evaluate.evaluate import _group, fit_detector, labels, load_rows, matrix
from eebguard.lab.evaluate.metrics import prior_corrected, roc_auc, score_all, with_interval
from eebguard.scanners import feature_names

from eebguard.lab.tables import write


PROBE = list(PROBE_FEATURES)
REACH = ["reach.name_image", "hard.best_image_reach"]
KV = ["kv.approach_z", "loc.kv_drop", "loc.layer_drop_max"]


def feature_sets() -> dict[str, list[str]]:
    """Every candidate that was compared (all reported, the chosen one is ``DEFAULT_FEATURES``)."""
    schema = feature_names()
    return {
        "all features (schema)": schema,
        "white-box only (no probe.*)": [n for n in schema if not n.startswith("probe.")],
        "probe + name": PROBE + REACH[:1],
        "probe + name + trigger": PROBE + REACH,
        "probe + name + trigger + K/V": PROBE + REACH + KV,
        "probe + name + trigger + K/V + text encoder": PROBE + REACH + KV + ["te.approach_z", "loc.te_drop"],
        "DEFAULT_FEATURES (reachability)": list(DEFAULT_FEATURES),
        "baseline: t2ishield": T2ISHIELD_FEATURES,
        "baseline: sampling probe": PROBE,
    }


def cv_predictions(rows, names, **params) -> tuple[np.ndarray, np.ndarray]:
    """Pooled out-of-group probabilities and, per row, the positive rate of the fold that predicted it."""
    groups = [r.get("zoo", "") + "/" + _group(r) for r in rows]
    p = np.full(len(rows), np.nan)
    prevalence = np.full(len(rows), 0.5)
    for g in sorted(set(groups)):
        test = [i for i, x in enumerate(groups) if x == g]
        train = [rows[i] for i, x in enumerate(groups) if x != g]
        if len({r["label"] for r in train}) < 2:
            continue
        det = fit_detector(train, names, **params)
        p[test] = det.predict_proba(matrix([rows[i] for i in test], names))[:, 1]
        prevalence[test] = float(np.mean([r["label"] for r in train]))
    return p, prevalence


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", action="append", required=True)
    ap.add_argument("--json", default="experiments/results/detector_feature_sets.json")
    ap.add_argument("--n-boot", type=int, default=500)
    a = ap.parse_args(argv)
    rows = load_rows(a.zoo)
    y = labels(rows)
    print(f"{len(rows)} models ({int(y.sum())} positive), {len({_group(r) for r in rows})} groups")
    out = []
    print("| feature set | model | ROC-AUC (prior-corrected) | ROC-AUC (raw pooled) | cross-entropy | Brier |\n"
          "|---|---|---|---|---|---|")
    for set_name, names in feature_sets().items():
        for model, params in (("logistic C=0.3", {"C": 0.3}), ("logistic C=0.05", {"C": 0.05}),
                              ("trees", {"model": "trees"})):
            p, prevalence = cv_predictions(rows, names, **params)
            s = score_all(y, p, a.n_boot, 0)
            auc = with_interval(roc_auc, y, prior_corrected(p, prevalence), a.n_boot, 0)
            f = lambda m: f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"  # noqa: E731
            print(f"| {set_name} | {model} | {f(auc)} | {f(s['roc_auc'])} | {f(s['cross_entropy'])} | {f(s['brier'])} |")
            out.append({"feature_set": set_name, "model": model, "n_features": len(names), "roc_auc": auc,
                        "roc_auc_raw_pooled": s["roc_auc"], **{k: s[k] for k in ("cross_entropy", "brier")}})
    path = write("detector_feature_sets", {"zoos": a.zoo, "n_models": len(rows), "n_positive": int(y.sum()),
                                           "cv": "leave-one-group-out",
                                           "roc_auc": "prior-corrected pooled scores (metrics.prior_corrected)",
                                           "results": out}, a.json)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
