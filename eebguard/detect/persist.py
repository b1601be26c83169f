"""Saving and loading detectors without pickle: parameters as arrays (``.npz``, loaded with
``allow_pickle=False``) plus a JSON header (feature schema version, feature names, the zoo it was fitted
on, the command that refits it). Inference from the stored arrays reproduces scikit-learn's
``predict_proba`` exactly (checked when saving)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV

from eebguard.features import SCHEMA_VERSION

FORMAT = "eebguard-detector"
FORMAT_VERSION = "1"


class DetectorFormatError(ValueError):
    """A detector file that cannot be used (wrong format, schema version, or damaged)."""


def _pipeline_params(pipe, prefix: str, arrays: dict) -> dict:
    imputer, scaler, clf = pipe.steps[0][1], pipe.steps[1][1], pipe.steps[2][1]
    arrays[f"{prefix}stat"] = imputer.statistics_
    ind = imputer.indicator_.features_ if imputer.indicator_ is not None else np.zeros(0, dtype=int)
    arrays[f"{prefix}ind"] = np.asarray(ind, dtype=np.int64)
    arrays[f"{prefix}mean"] = scaler.mean_
    arrays[f"{prefix}scale"] = scaler.scale_
    if hasattr(clf, "coef_"):
        arrays[f"{prefix}coef"] = clf.coef_.ravel()
        arrays[f"{prefix}intercept"] = clf.intercept_
        return {"kind": "logistic"}
    trees = clf.estimators_
    for j, t in enumerate(trees):
        tr = t.tree_
        arrays[f"{prefix}t{j}_feature"] = tr.feature.astype(np.int64)
        arrays[f"{prefix}t{j}_threshold"] = tr.threshold
        arrays[f"{prefix}t{j}_left"] = tr.children_left.astype(np.int64)
        arrays[f"{prefix}t{j}_right"] = tr.children_right.astype(np.int64)
        v = tr.value[:, 0, :]
        arrays[f"{prefix}t{j}_proba"] = v / v.sum(1, keepdims=True)
    return {"kind": "trees", "n_trees": len(trees)}


def save_detector(det, path: str | Path, *, zoo: dict | None = None, command: str | None = None, X_check=None) -> Path:
    """Write ``<path>.npz`` and ``<path>.json``; with ``X_check``, verify the stored arrays reproduce
    ``det.predict_proba`` before returning."""
    path = Path(path).with_suffix("")
    arrays: dict[str, np.ndarray] = {}
    parts = []
    cal = det.calibrated_
    pairs = ([(c.estimator, c.calibrators[0]) for c in cal.calibrated_classifiers_]
             if isinstance(cal, CalibratedClassifierCV) else [(cal, None)])
    for k, (pipe, calib) in enumerate(pairs):
        info = _pipeline_params(pipe, f"c{k}_", arrays)
        if calib is not None:
            arrays[f"c{k}_ab"] = np.array([calib.a_, calib.b_], dtype=np.float64)
        info["calibrated"] = calib is not None
        parts.append(info)
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "schema_version": SCHEMA_VERSION,
        "features": list(det.feature_names_), "classes": [int(c) for c in det.classes_],
        "params": det.get_params(), "parts": parts, "zoo": zoo or {}, "command": command,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".npz"), **arrays)
    path.with_suffix(".json").write_text(json.dumps(header, indent=2, default=str) + "\n")
    if X_check is not None:
        stored = load_detector(path).predict_proba(X_check)
        if not np.allclose(stored, det.predict_proba(X_check), atol=1e-9):
            raise RuntimeError("stored detector does not reproduce the fitted one")
    return path.with_suffix(".json")


class FrozenDetector:
    """A saved detector: ``predict_proba``/``predict`` from stored arrays; cannot be refitted."""

    def __init__(self, header: dict, arrays: dict[str, np.ndarray]):
        self.header = header
        self.arrays = arrays
        self.feature_names_ = list(header["features"])
        self.classes_ = np.array(header["classes"])
        self.n_features_in_ = len(self.feature_names_)

    @property
    def zoo(self) -> dict:
        return self.header.get("zoo", {})

    def _part(self, k: int, info: dict, X: np.ndarray) -> np.ndarray:
        a = self.arrays
        p = f"c{k}_"
        Xi = np.where(np.isnan(X), a[f"{p}stat"][None, :], X)
        ind = a[f"{p}ind"]
        if len(ind):
            Xi = np.hstack([Xi, np.isnan(X[:, ind]).astype(np.float64)])
        Z = (Xi - a[f"{p}mean"]) / a[f"{p}scale"]
        if info["kind"] == "logistic":
            f = Z @ a[f"{p}coef"] + a[f"{p}intercept"][0]
            base = expit(f)
        else:
            probs = np.zeros(len(Z))
            for j in range(info["n_trees"]):
                feat, thr = a[f"{p}t{j}_feature"], a[f"{p}t{j}_threshold"]
                left, right, proba = a[f"{p}t{j}_left"], a[f"{p}t{j}_right"], a[f"{p}t{j}_proba"]
                node = np.zeros(len(Z), dtype=np.int64)
                while True:
                    active = left[node] != -1
                    if not active.any():
                        break
                    go_left = Z[np.arange(len(Z)), np.maximum(feat[node], 0)] <= thr[node]
                    node = np.where(active, np.where(go_left, left[node], right[node]), node)
                probs += proba[node, 1]
            f = probs / info["n_trees"]
            base = f
        if info["calibrated"]:
            ab = a[f"{p}ab"]
            return expit(-(ab[0] * f + ab[1]))
        return base

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got shape {X.shape}")
        parts = self.header["parts"]
        p1 = np.mean([self._part(k, info, X) for k, info in enumerate(parts)], axis=0)
        return np.stack([1 - p1, p1], axis=1)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]


def load_detector(path: str | Path) -> FrozenDetector:
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".json", ".npz") else path
    jpath, npath = base.with_suffix(".json"), base.with_suffix(".npz")
    if not jpath.is_file() or not npath.is_file():
        raise DetectorFormatError(f"no detector at {base} (expected {jpath.name} and {npath.name})")
    try:
        header = json.loads(jpath.read_text())
    except json.JSONDecodeError as exc:
        raise DetectorFormatError(f"{jpath}: not valid JSON ({exc.msg})") from None
    if header.get("format") != FORMAT:
        raise DetectorFormatError(f"{jpath}: not an eebguard detector")
    if str(header.get("schema_version")) != SCHEMA_VERSION:
        raise DetectorFormatError(
            f"{jpath}: fitted on feature schema {header.get('schema_version')!r}, this eebguard computes schema "
            f"{SCHEMA_VERSION!r}; refit it with `eebguard detector fit`")
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise DetectorFormatError(f"{npath}: unreadable ({exc})") from None
    return FrozenDetector(header, arrays)
