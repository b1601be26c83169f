"""How well the soft-trigger search's judge-driven mode (scans without a reference) separates models whose
erased concept is still reachable through a planted trigger: ROC-AUC of each ``soft.judge_*`` feature over
a zoo's reference-free scans, with its bootstrap interval, on all models and per attack depth (positives:
that depth's survivors; negatives: every model without a planted backdoor, as ``eebguard zoo features``).

    python experiments/judge_soft_reach.py experiments/zoo-records/fifth-check --exclude-design

``--exclude-design`` leaves out the 14 fifth-zoo models the mode was designed on (docs/evaluation.md), so
the numbers are on models it was not designed on. Prints a table; writes
experiments/results/judge_soft_reach.json.
"""
from __future__ import annotations

import argparse

import numpy as np

from eebguard.lab.tables import table, write

# the models of the fifth zoo the judge-driven mode was tried on before its evaluation was pre-registered
DESIGN_IDS = ("six-shallow-s4-uce", "six-none-s4-uce", "nine-deep-s4-mace", "nine-none-s4-mace",
              "triangle-deep-s4-uce", "triangle-none-s4-uce", "six-data-s4-rece", "six-none-s4-rece",
              "nine-shallow-s4-esd_x", "nine-none-s4-esd_x", "six-hn_benign_binding-s4-uce",
              "triangle-hn_second_erasure-s4-mace", "six-surface-s4-uce", "triangle-shallow-s4-mace")
FEATURES = ("soft.judge_reach", "soft.judge_early_reach", "soft.judge_start")


def _auc(y, x, n_boot: int = 1000) -> dict:
    from eebguard.lab.evaluate.metrics import roc_auc, with_interval

    r = with_interval(roc_auc, y, x, n_boot=n_boot)
    return {"roc_auc": r["value"], "low": r["low"], "high": r["high"]}


def main(argv=None) -> int:
    from eebguard.lab.evaluate.evaluate import load_rows

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--exclude-design", action="store_true", help="leave out the 14 design models (fifth zoo)")
    ap.add_argument("--json", default=None, help="results file (default experiments/results/judge_soft_reach.json)")
    a = ap.parse_args(argv)
    rows = [r for r in load_rows([a.zoo], reference_free=True) if not (a.exclude_design and r["id"] in DESIGN_IDS)]
    value = lambda r, f: float(r["scan"]["features"]["values"].get(f, np.nan))  # noqa: E731
    out, printed = [], []
    groups = [("all models", rows, [r["label"] for r in rows])]
    for depth in sorted({r["attack"] for r in rows if r["planted"]}):
        sub = [r for r in rows if not r["planted"] or (r["attack"] == depth and r["label"] == 1)]
        groups.append((f"{depth} survivors vs unplanted", sub, [int(r["planted"]) for r in sub]))
    for name, sub, y in groups:
        y = np.array(y)
        if y.min() == y.max():
            continue
        row = {"group": name, "positives": int(y.sum()), "models": len(y)}
        for f in FEATURES:
            x = np.array([value(r, f) for r in sub])
            row[f] = _auc(y, x)
        out.append(row)
        printed.append({"group": name, "positives / models": f"{row['positives']} / {row['models']}",
                        **{f: f"{row[f]['roc_auc']:.3f} [{row[f]['low']:.2f}, {row[f]['high']:.2f}]" for f in FEATURES}})
    print(table(printed, list(printed[0])))
    per_model = [{"id": r["id"], "label": r["label"], "planted": r["planted"], "attack": r["attack"],
                  **{f: value(r, f) for f in FEATURES}} for r in rows]
    print(write("judge_soft_reach", {"zoo": a.zoo, "exclude_design": a.exclude_design, "groups": out,
                                     "models": per_model}, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
