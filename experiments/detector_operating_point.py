"""Can a decision threshold chosen on the fit zoo make the shipped detector flag held-out backdoors?

Leave-one-group-out predictions on the FIT zoo (the feature-set benchmark's ``cv_predictions``, the
shipped features and parameters) pick the threshold that maximises TPR - FPR there, on the raw pooled
probabilities and on prior-corrected ones (each fold's log-odds minus its training prevalence's, plus
the whole zoo's, mapped back to a probability). The detector fitted on the whole fit zoo is then scored
at each threshold on the other zoos (docs/evaluation.md):

    python experiments/detector_operating_point.py --fit-zoo experiments/zoo-records/default --zoo experiments/zoo-records/heldout --zoo experiments/zoo-records/design
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from eebguard.lab.tables import table, write
from detector_feature_sets import cv_predictions  # noqa: E402


def youden(scores: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """The score threshold with the largest TPR - FPR (lowest such threshold on ties), its TPR and FPR."""
    best = None
    for t in np.unique(scores):
        tpr, fpr = float(np.mean(scores[y == 1] >= t)), float(np.mean(scores[y == 0] >= t))
        if best is None or tpr - fpr > best[1] - best[2] + 1e-12:
            best = (float(t), tpr, fpr)
    return best


def main():
    from eebguard.detect.estimator import DEFAULT_FEATURES, DEFAULT_PARAMS
    from eebguard.lab.evaluate.evaluate import fit_detector, labels, load_rows, matrix
    from eebguard.lab.evaluate.metrics import prior_corrected

    ap = argparse.ArgumentParser()
    ap.add_argument("--fit-zoo", action="append", required=True)
    ap.add_argument("--zoo", action="append", required=True, help="zoos to score at the chosen thresholds")
    ap.add_argument("--json", default=None, help="default: results/detector_operating_point.json")
    a = ap.parse_args()
    fit = load_rows(a.fit_zoo)
    y = labels(fit)
    p, prevalence = cv_predictions(fit, list(DEFAULT_FEATURES), **DEFAULT_PARAMS)
    prior = math.log(y.mean() / (1 - y.mean()))
    thresholds = {}
    t, tpr, fpr = youden(p, y)
    thresholds["raw pooled"] = (t, tpr, fpr)
    t, tpr, fpr = youden(prior_corrected(p, prevalence) + prior, y)
    thresholds["prior-corrected"] = (1 / (1 + math.exp(-t)), tpr, fpr)
    det = fit_detector(fit)
    rows = []
    for name, (t, tpr, fpr) in thresholds.items():
        rows.append({"threshold from": name, "P threshold": round(t, 4), "zoo": "fit (out of group)",
                     "positives flagged": f"{tpr:.2f}", "negatives flagged": f"{fpr:.2f}"})
        for z in a.zoo:
            rz = load_rows([z])
            yz, q = labels(rz), det.predict_proba(matrix(rz, det.feature_names_))[:, 1]
            rows.append({"threshold from": name, "P threshold": round(t, 4), "zoo": Path(z).name,
                         "positives flagged": f"{int(np.sum(q[yz == 1] >= t))}/{int(yz.sum())}",
                         "negatives flagged": f"{int(np.sum(q[yz == 0] >= t))}/{int((yz == 0).sum())}",
                         "positives' P": f"{q[yz == 1].min():.3f}-{q[yz == 1].max():.3f}"})
    cols = ["threshold from", "P threshold", "zoo", "positives flagged", "negatives flagged", "positives' P"]
    print(table(rows, cols))
    print(write("detector_operating_point", {"fit_zoos": a.fit_zoo, "zoos": a.zoo, "rows": rows,
                                             "command": "python experiments/detector_operating_point.py " + " ".join(sys.argv[1:])},
                a.json))


if __name__ == "__main__":
    main()
