"""Evaluate a detector on zoos the TrojAI way: one calibrated probability per model, scored with
ROC-AUC, cross-entropy, Brier and TPR at fixed FPR (bootstrap 95% intervals), broken down by attack
depth, erasure method and concept family, plus generalisation splits that refit on part of the models
and score the held-out rest, and baselines measured side by side."""
from __future__ import annotations

import numpy as np

from eebguard.detect.baselines import PROBE_FEATURES, T2ISHIELD_FEATURES
from eebguard.detect.estimator import DEFAULT_FEATURES, DEFAULT_PARAMS, EEBDetector, reference_free_features, scan_features
from eebguard.lab.evaluate.metrics import score_all
from eebguard.features import SCHEMA_VERSION, readable
from eebguard.lab.tables import markdown_table


def matrix(rows: list[dict], names: list[str]) -> np.ndarray:
    out = np.full((len(rows), len(names)), np.nan)
    for i, r in enumerate(rows):
        vals = dict(r["scan"]["features"]["values"])
        for j, n in enumerate(names):
            if n in vals:
                out[i, j] = vals[n]
    return out


def labels(rows: list[dict]) -> np.ndarray:
    return np.array([int(r["label"]) for r in rows])


def load_rows(zoos, reference_free: bool = False) -> list[dict]:
    """Every scanned model of ``zoos`` (manifest entry + ``scan``); ``reference_free``: the scans made
    without a reference (``eebguard zoo scan --reference none``) instead of those with one."""
    from eebguard.lab.zoo.scan import zoo_table

    rows = []
    for z in zoos:
        for r in zoo_table(z, reference_free):
            version = str(r["scan"].get("features", {}).get("schema_version"))
            # absent features would be imputed silently: refuse a row whose version lacks any this mode computes
            if not readable(version, scan_features(reference_free)):
                how = "rescan the zoo (`eebguard zoo scan`) into a fresh features.jsonl"
                raise ValueError(f"{z}: model {r['id']} was scanned with feature schema {version!r}, this eebguard "
                                 f"computes {SCHEMA_VERSION!r}; {how}")
            rows.append({**r, "zoo": str(z)})
    return rows


def fit_detector(rows: list[dict], names: list[str] | None = None, **params) -> EEBDetector:
    """``names``: features to use (default: the shipped detector's, ``DEFAULT_FEATURES``); ``params``
    override ``DEFAULT_PARAMS``."""
    names = names or list(DEFAULT_FEATURES)
    return EEBDetector(features=names, **{**DEFAULT_PARAMS, **params}).fit(matrix(rows, names), labels(rows))


def _score(rows, p, n_boot, seed) -> dict:
    return score_all(labels(rows), p, n_boot, seed) if rows else {}


def breakdown(rows: list[dict], p: np.ndarray, n_boot: int, seed: int) -> dict:
    """Per attack depth (its models against every model without a planted backdoor), per erasure method
    and per family (all their models), and the planted-but-destroyed backdoors (scored against ``label``)."""
    out: dict = {"attack": {}, "erasure": {}, "family": {}}
    clean = [i for i, r in enumerate(rows) if not r["planted"]]
    for a in sorted({r["attack"] for r in rows if r["planted"]}):
        idx = clean + [i for i, r in enumerate(rows) if r["attack"] == a]
        out["attack"][a] = _score([rows[i] for i in idx], p[idx], n_boot, seed)
        out["attack"][a]["survival_rate"] = float(np.mean([rows[i]["label"] for i in idx if rows[i]["attack"] == a]))
    for key in ("erasure", "family"):
        for v in sorted({str(r[key]) for r in rows}):
            idx = [i for i, r in enumerate(rows) if str(r[key]) == v]
            out[key][v] = _score([rows[i] for i in idx], p[idx], n_boot, seed)
    destroyed = [i for i, r in enumerate(rows) if r["planted"] and not r["label"]]
    if destroyed:
        pd = p[destroyed]
        out["planted_destroyed"] = {"n": len(destroyed), "mean_probability": float(np.mean(pd)),
                                    "flagged_at_0.5": float(np.mean(pd >= 0.5)),
                                    **_score([rows[i] for i in destroyed], pd, n_boot, seed)}
    hn = [i for i, r in enumerate(rows) if r.get("hard_negative")]
    if hn:
        out["hard_negatives"] = {"n": len(hn), "mean_probability": float(np.mean(p[hn])),
                                 "flagged_at_0.5": float(np.mean(p[hn] >= 0.5))}
    return out


def splits(rows: list[dict], names: list[str], n_boot: int, seed: int, **params) -> dict:
    """Refit on the rest, score the held-out part. Leave-one-attack-out keeps half of the unplanted models
    (by group) out of training and scores them with the held-out attack, so both classes are present."""
    out: dict = {"leave_one_attack_out": {}, "leave_one_erasure_out": {}, "leave_one_family_out": {}}
    groups = sorted({r.get("zoo", "") + "/" + _group(r) for r in rows if not r["planted"]})
    half_b = set(groups[1::2])

    def run(train, test):
        if len({r["label"] for r in train}) < 2 or len({r["label"] for r in test}) < 2:
            return {"skipped": "one class only"}
        det = fit_detector(train, names, **params)
        return _score(test, det.predict_proba(matrix(test, names))[:, 1], n_boot, seed)

    for a in sorted({r["attack"] for r in rows if r["planted"]}):
        in_b = lambda r: (not r["planted"]) and (r.get("zoo", "") + "/" + _group(r)) in half_b  # noqa: E731
        test = [r for r in rows if r["attack"] == a or in_b(r)]
        train = [r for r in rows if r["attack"] != a and not in_b(r)]
        out["leave_one_attack_out"][a] = run(train, test)
    for key, name in (("erasure", "leave_one_erasure_out"), ("family", "leave_one_family_out")):
        for v in sorted({str(r[key]) for r in rows}):
            out[name][v] = run([r for r in rows if str(r[key]) != v], [r for r in rows if str(r[key]) == v])
    for name, res in out.items():
        aucs = [m["roc_auc"]["value"] for m in res.values() if "roc_auc" in m]
        res["mean_roc_auc"] = float(np.mean(aucs)) if aucs else float("nan")
    return out


def _group(r: dict) -> str:
    return "-".join(r["id"].split("-")[:-1])  # models of one group share the attacked model


def evaluate(zoos, *, detector=None, fit_zoos=None, n_boot: int = 1000, seed: int = 0, with_splits: bool = True,
             with_baselines: bool = True, params: dict | None = None, reference_free: bool = False) -> dict:
    """``detector``: a fitted/loaded detector, or None to fit one on ``fit_zoos``; ``reference_free``: score
    the zoos' scans made without a reference (and fit on ``fit_zoos``' scans made without one)."""
    params = params or {}
    rows = load_rows(zoos, reference_free)
    if not rows:
        raise ValueError("no scanned models in the given zoos (run `eebguard zoo scan` first)")
    fit_rows = load_rows(fit_zoos, reference_free) if fit_zoos else []
    if detector is None:
        if not fit_rows:
            raise ValueError("give a detector or zoos to fit one on")
        # reference-free scans lack the search's features: fit on what they have
        detector = fit_detector(fit_rows, reference_free_features() if reference_free else None, **params)
    names = list(detector.feature_names_)
    p = detector.predict_proba(matrix(rows, names))[:, 1]
    res = _score(rows, p, n_boot, seed)
    out = {
        "roc_auc": res["roc_auc"], "cross_entropy": res["cross_entropy"], "brier": res["brier"],
        "tpr_at_fpr": {"0.01": res["tpr_at_fpr_0.01"], "0.05": res["tpr_at_fpr_0.05"]},
        "breakdown": breakdown(rows, p, n_boot, seed),
        "n_models": len(rows), "n_positive": int(labels(rows).sum()),
        "zoos": [str(z) for z in zoos], "reference_free": bool(reference_free), "fit_zoos": [str(z) for z in (fit_zoos or [])],
        "detector_zoo": getattr(detector, "zoo", {}) or {"fitted_on": [str(z) for z in (fit_zoos or [])]},
        "predictions": [{"id": r["id"], "zoo": r["zoo"], "label": int(r["label"]), "probability": float(q)}
                        for r, q in zip(rows, p)],
    }
    if with_baselines and fit_rows:
        out["baselines"] = {}
        readable = set(reference_free_features()) if reference_free else None
        for bname, feats in (("t2ishield", T2ISHIELD_FEATURES), ("sampling_probe", PROBE_FEATURES)):
            if readable is not None and not set(feats) <= readable:
                continue  # a baseline reading the found trigger has nothing to read without a reference
            det = fit_detector(fit_rows, feats, **params)
            pb = det.predict_proba(matrix(rows, feats))[:, 1]
            sb = _score(rows, pb, n_boot, seed)
            out["baselines"][bname] = {"roc_auc": sb["roc_auc"], "cross_entropy": sb["cross_entropy"],
                                       "brier": sb["brier"], "tpr_at_fpr": {"0.01": sb["tpr_at_fpr_0.01"],
                                                                            "0.05": sb["tpr_at_fpr_0.05"]},
                                       "features": feats}
    if with_splits:
        out["splits"] = splits(rows + [r for r in fit_rows if r["id"] not in {x["id"] for x in rows}],
                               names, n_boot, seed, **params)
    else:
        out["splits"] = {}
    return out


def markdown(res: dict) -> str:
    """The evaluation as markdown tables."""
    def f(m):
        if not m or "value" not in m:
            return "–"
        return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"

    def scores(m):
        return [f(m["roc_auc"]), f(m["cross_entropy"]), f(m["brier"]), f(m["tpr_at_fpr"]["0.01"]), f(m["tpr_at_fpr"]["0.05"])]

    rows = [["eebguard", *scores(res)]] + [[f"baseline: {b}", *scores(m)] for b, m in res.get("baselines", {}).items()]
    lines = [f"Scored models: {res['n_models']} ({res['n_positive']} positive).", "",
             *markdown_table(["detector", "ROC-AUC", "cross-entropy", "Brier", "TPR@1%FPR", "TPR@5%FPR"], rows)]
    rows = []
    for key in ("attack", "erasure", "family"):
        for v, m in res["breakdown"].get(key, {}).items():
            n = m.get("roc_auc", m.get("cross_entropy", {}))
            extra = f" (survival {m['survival_rate']:.2f})" if "survival_rate" in m else ""
            rows.append([key, f"{v}{extra}", f"{n.get('n', '?')} ({n.get('positives', '?')})", f(m.get("roc_auc")),
                         f(m.get("cross_entropy")), f(m.get("tpr_at_fpr_0.05"))])
    for key in ("planted_destroyed", "hard_negatives"):
        m = res["breakdown"].get(key)
        if m:
            rows.append([key, "all", m["n"], f"mean P {m['mean_probability']:.3f}", f"flagged at 0.5: {m['flagged_at_0.5']:.2f}", ""])
    lines += ["", *markdown_table(["breakdown", "group", "models (positive)", "ROC-AUC", "cross-entropy", "TPR@5%FPR"], rows)]
    if res.get("splits"):
        rows = []
        for name, sp in res["splits"].items():
            for v, m in sp.items():
                if isinstance(m, dict):
                    rows.append([name, v, f(m.get("roc_auc")) if "roc_auc" in m else m.get("skipped", "–"), f(m.get("cross_entropy"))])
            rows.append([name, "mean", f"{sp.get('mean_roc_auc', float('nan')):.3f}", ""])
        lines += ["", *markdown_table(["split", "held out", "ROC-AUC", "cross-entropy"], rows)]
    return "\n".join(lines)
