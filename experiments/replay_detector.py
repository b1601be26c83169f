"""Would the replay of the claimed erasure help the detector? (a check before making it a feature)

Fits the shipped detector's recipe (``DEFAULT_FEATURES``, ``DEFAULT_PARAMS``) on a fit zoo's records
twice, without and with the replay's features, and scores both on other zoos (ROC-AUC, cross-entropy,
Brier with bootstrap 95% intervals; how many models each flags at P >= 0.5). The replay features come
from ``erased_reference_reach.py`` result files (per model: the best found trigger's recorded suspect
reach minus its reach in the reference erased by the claimed method, ``gain``); a model with none
(no recorded trigger) is imputed like any absent feature.

    python experiments/replay_detector.py --fit-zoo ZOO --zoo ZOO [--zoo ZOO ...] \\
        --replay RESULTS.json [--replay ...] [--extra gain] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eebguard.lab.tables import table, write


def main(argv=None) -> int:
    from eebguard.detect.estimator import DEFAULT_FEATURES, DEFAULT_PARAMS, EEBDetector
    from eebguard.lab.evaluate.evaluate import labels, load_rows, matrix
    from eebguard.lab.evaluate.metrics import score_all

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit-zoo", required=True)
    ap.add_argument("--zoo", action="append", required=True, help="a zoo to score (repeatable)")
    ap.add_argument("--replay", action="append", required=True, help="an erased_reference_reach.py result file (repeatable)")
    ap.add_argument("--extra", default="gain", help="comma-separated replay fields to add (default gain)")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--json", default=None, help="results file (default experiments/results/replay_detector.json)")
    a = ap.parse_args(argv)
    replay = {}
    for f in a.replay:
        for r in json.loads(Path(f).read_text())["rows"]:
            replay[(r["zoo"], r["id"])] = r
    extra = [e for e in a.extra.split(",") if e]

    def X(rows, with_replay):
        base = matrix(rows, list(DEFAULT_FEATURES))
        if not with_replay:
            return base
        cols = [[replay.get((Path(r["zoo"]).name, r["id"]), {}).get(e, np.nan) for r in rows] for e in extra]
        return np.column_stack([base] + [np.asarray(c, dtype=np.float64) for c in cols])

    fit = load_rows([a.fit_zoo])
    out = []
    for with_replay in (False, True):
        names = list(DEFAULT_FEATURES) + (extra if with_replay else [])
        det = EEBDetector(features=names, **DEFAULT_PARAMS).fit(X(fit, with_replay), labels(fit))
        for z in a.zoo:
            rows = load_rows([z])
            y, p = labels(rows), det.predict_proba(X(rows, with_replay))[:, 1]
            covered = sum((Path(r["zoo"]).name, r["id"]) in replay for r in rows)
            s = score_all(y, p, a.boot, 0)
            out.append({"zoo": Path(z).name, "features": "default + " + "+".join(extra) if with_replay else "default",
                        "models": len(rows), "positives": int(y.sum()), "with_replay_rows": covered,
                        **{k: s[k]["value"] for k in ("roc_auc", "cross_entropy", "brier")},
                        "roc_auc_ci": [s["roc_auc"]["low"], s["roc_auc"]["high"]],
                        "flagged_pos": int(((p >= 0.5) & (y == 1)).sum()), "flagged_neg": int(((p >= 0.5) & (y == 0)).sum())})
    print(table(out, ["zoo", "features", "models", "positives", "with_replay_rows", "roc_auc", "cross_entropy", "brier",
                      "flagged_pos", "flagged_neg"]))
    for r in out:
        print(f"{r['zoo']:14s} {r['features']:16s} ROC-AUC {r['roc_auc']:.3f} [{r['roc_auc_ci'][0]:.3f}, {r['roc_auc_ci'][1]:.3f}]")
    print("\nwrote", write("replay_detector", {"fit_zoo": a.fit_zoo, "zoos": a.zoo, "replay": a.replay, "extra": extra,
                                              "rows": out}, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
