"""Does fitting the detector on more zoos help? Leave-one-zoo-out against fitting on one zoo.

The detectors shipped until 2026-12-06 were fitted on one zoo (``default``, 76 models, 18 attacked
groups), and leave-one-group-out predictions inside it rank at chance (docs/evaluation.md), so the fit
had little to stand on. For each recipe (a feature set and estimator parameters: the logistic recipe
on ``DEFAULT_FEATURES`` / ``REPLAY_FEATURES``, and extra-trees over the whole schema with and without
the replay's features) this fits on every zoo but one and scores the one left out, for each zoo in
turn, next to the same recipe fitted on one zoo (``--single``, default: the first zoo given) and scored
on the same held-out zoo. Reports ROC-AUC (bootstrap 95% interval), cross-entropy, Brier and how many
positives and negatives each flags at P >= 0.5, per held-out zoo and pooled over the held-out
predictions. ``--test ZOO`` also scores the fits on all the rotation's zoos on zoos never used in any
fit (the pre-registered check).

``--reference-free`` scores what a scan *without* a reference sees (fits are unchanged): the rotation's
zoos keep only ``reference_free_features()`` (the rest NaN: their records hold scans with a reference,
whose reference-free features a reference-free scan reproduces exactly, checked on the fifth zoo), the
``--test`` zoos are read from their real reference-free scans (``zoo scan --reference none``), and the
recipes are the ones that make sense there: the 2026-12-03 ``default`` set (two of its six features
then always missing) and logistic/extra-trees over the reference-free features. Results go to
``pooled_detector_reference_free.json``.

    python experiments/pooled_detector.py --zoo Z1 --zoo Z2 ... [--single Z1] [--test Z5] [--reference-free] [--json PATH]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from eebguard.lab.tables import table, write


def _row(name, fit, zoo, y, p, boot):
    from eebguard.lab.evaluate.metrics import score_all

    s = score_all(y, p, boot, 0)
    return {"features": name, "fit": fit, "scored": zoo, "models": len(y), "positives": int(y.sum()),
            **{k: s[k]["value"] for k in ("roc_auc", "cross_entropy", "brier")},
            "roc_auc_ci": [s["roc_auc"]["low"], s["roc_auc"]["high"]],
            "flagged_pos": int(((p >= 0.5) & (y == 1)).sum()), "flagged_neg": int(((p >= 0.5) & (y == 0)).sum())}


def recipes(reference_free: bool = False) -> dict[str, tuple[list[str], dict]]:
    from eebguard.detect.estimator import (DEFAULT_FEATURES, DEFAULT_PARAMS, REPLAY_FEATURES, TREES_PARAMS,
                                           reference_features, reference_free_features, scan_features)

    if reference_free:
        free = reference_free_features()
        return {"default": (list(DEFAULT_FEATURES), dict(DEFAULT_PARAMS)),
                "free-logistic": (free, dict(DEFAULT_PARAMS)),
                "free-trees": (free, dict(TREES_PARAMS))}
    every = scan_features()  # what a scan with a reference has
    return {"default": (list(DEFAULT_FEATURES), dict(DEFAULT_PARAMS)),
            "replay": (list(REPLAY_FEATURES), dict(DEFAULT_PARAMS)),
            "all-trees": (every, dict(TREES_PARAMS)),
            "all-trees-noreplay": (reference_features(), dict(TREES_PARAMS))}


def main(argv=None) -> int:
    from eebguard.detect.estimator import reference_free_features
    from eebguard.lab.evaluate.evaluate import fit_detector, labels, load_rows, matrix as full_matrix

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", action="append", required=True, help="a zoo for the leave-one-zoo-out rotation (repeatable)")
    ap.add_argument("--single", default=None, help="the one-zoo fit to compare with (default: the first --zoo)")
    ap.add_argument("--test", action="append", default=[], help="a zoo never fitted on, scored by every fit (repeatable)")
    ap.add_argument("--reference-free", action="store_true",
                    help="score what reference-free scans see (the --test zoos' own reference-free scans)")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--json", default=None, help="results file (default experiments/results/pooled_detector.json)")
    a = ap.parse_args(argv)
    single = a.single or a.zoo[0]
    rows = {z: load_rows([z]) for z in dict.fromkeys(a.zoo + [single] + a.test)}
    test_rows = {t: load_rows([t], a.reference_free) for t in a.test}
    name = {z: Path(z).name for z in rows}
    free = set(reference_free_features())

    def matrix(rs, feats):
        X = full_matrix(rs, feats)
        if a.reference_free:  # what a scan without a reference has
            X[:, [j for j, f in enumerate(feats) if f not in free]] = np.nan
        return X

    out = []
    for fname, (feats, params) in recipes(a.reference_free).items():
        one = fit_detector(rows[single], feats, **params)
        pooled_y, pooled_p, single_y, single_p = [], [], [], []
        for z in a.zoo:
            train = [r for other in a.zoo if other != z for r in rows[other]]
            det = fit_detector(train, feats, **params)
            y, X = labels(rows[z]), matrix(rows[z], feats)
            p = det.predict_proba(X)[:, 1]
            out.append(_row(fname, "all but " + name[z], name[z], y, p, a.boot))
            pooled_y.append(y)
            pooled_p.append(p)
            if z != single:
                q = one.predict_proba(X)[:, 1]
                out.append(_row(fname, name[single], name[z], y, q, a.boot))
                single_y.append(y)
                single_p.append(q)
        out.append(_row(fname, "all but the scored (pooled)", "each zoo in turn", np.concatenate(pooled_y),
                        np.concatenate(pooled_p), a.boot))
        if single_y:
            out.append(_row(fname, name[single] + " (pooled)", "all but " + name[single], np.concatenate(single_y),
                            np.concatenate(single_p), a.boot))
        if a.test:
            every = fit_detector([r for z in a.zoo for r in rows[z]], feats, **params)
            for t in a.test:
                y, X = labels(test_rows[t]), matrix(test_rows[t], feats)
                out.append(_row(fname, "all " + str(len(a.zoo)), name[t], y, every.predict_proba(X)[:, 1], a.boot))
                out.append(_row(fname, name[single], name[t], y, one.predict_proba(X)[:, 1], a.boot))
    cols = ["features", "fit", "scored", "models", "positives", "roc_auc", "cross_entropy", "brier", "flagged_pos", "flagged_neg"]
    print(table(out, cols))
    for r in out:
        print(f"{r['features']:18s} {r['fit']:30s} -> {r['scored']:18s} ROC-AUC {r['roc_auc']:.3f} "
              f"[{r['roc_auc_ci'][0]:.3f}, {r['roc_auc_ci'][1]:.3f}]")
    stem = "pooled_detector_reference_free" if a.reference_free else "pooled_detector"
    print("\nwrote", write(stem, {"zoos": a.zoo, "single": single, "test": a.test,
                                 "reference_free": a.reference_free, "rows": out}, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
