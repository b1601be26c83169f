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

from eebguard.features import SCHEMA_VERSION, readable

FORMAT = "eebguard-detector"
FORMAT_VERSION = "2"  # 2: tree nodes in one array per field (version 1 files still load)


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
    # every tree's nodes in one array per field (children are node indices within their own tree),
    # ``toffsets`` marks where each tree starts: a few arrays instead of five per tree
    trees = [t.tree_ for t in clf.estimators_]
    arrays[f"{prefix}toffsets"] = np.cumsum([0] + [t.node_count for t in trees]).astype(np.int64)
    arrays[f"{prefix}tfeature"] = np.concatenate([t.feature for t in trees]).astype(np.int64)
    arrays[f"{prefix}tthreshold"] = np.concatenate([t.threshold for t in trees])
    arrays[f"{prefix}tleft"] = np.concatenate([t.children_left for t in trees]).astype(np.int64)
    arrays[f"{prefix}tright"] = np.concatenate([t.children_right for t in trees]).astype(np.int64)
    v = np.concatenate([t.value[:, 0, :] for t in trees])
    arrays[f"{prefix}tproba"] = v[:, 1] / v.sum(1)
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
    np.savez_compressed(path.with_suffix(".npz"), **arrays)  # many small tree arrays: zip headers dominate
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
            off, feat, thr = a[f"{p}toffsets"], a[f"{p}tfeature"], a[f"{p}tthreshold"]
            left, right, proba = a[f"{p}tleft"], a[f"{p}tright"], a[f"{p}tproba"]
            rows = np.arange(len(Z))[:, None]
            node = np.zeros((len(Z), len(off) - 1), dtype=np.int64)  # per sample and tree, local index
            for _ in range(int(np.diff(off).max())):  # no path is longer than its tree (checked at load)
                at = off[:-1][None, :] + node
                active = left[at] != -1
                if not active.any():
                    break
                go_left = Z[rows, np.maximum(feat[at], 0)] <= thr[at]
                node = np.where(active, np.where(go_left, left[at], right[at]), node)
            f = proba[off[:-1][None, :] + node].mean(1)
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
    if not readable(header.get("schema_version"), header.get("features") or ()):
        raise DetectorFormatError(
            f"{jpath}: fitted on feature schema {header.get('schema_version')!r}, this eebguard computes schema "
            f"{SCHEMA_VERSION!r}; refit it with `eebguard detector fit`")
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        for k, info in enumerate(header["parts"]):
            if info.get("kind") == "trees":
                _join_trees_saved_one_by_one(arrays, f"c{k}_", int(info["n_trees"]))
                _check_trees(arrays, f"c{k}_", int(info["n_trees"]), len(header["features"]))
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise DetectorFormatError(f"{npath}: unreadable ({exc})") from None
    return FrozenDetector(header, arrays)


def _join_trees_saved_one_by_one(a: dict, p: str, n_trees: int) -> None:
    """Format 1 (before 2026-12-06) kept five arrays per tree: join them into format 2's layout."""
    if f"{p}t0_feature" not in a:
        return
    a[f"{p}toffsets"] = np.cumsum([0] + [len(a[f"{p}t{j}_feature"]) for j in range(n_trees)]).astype(np.int64)
    for name in ("feature", "threshold", "left", "right"):
        a[f"{p}t{name}"] = np.concatenate([a.pop(f"{p}t{j}_{name}") for j in range(n_trees)])
    a[f"{p}tproba"] = np.concatenate([a.pop(f"{p}t{j}_proba")[:, 1] for j in range(n_trees)])


def _check_trees(a: dict, p: str, n_trees: int, n_features: int) -> None:
    """Tree arrays from a file are hostile: children must point forward inside their own tree (so every
    path ends), features inside the scaled input (features plus missingness indicators)."""
    off = a[f"{p}toffsets"]
    if len(off) != n_trees + 1 or off[0] != 0 or np.any(np.diff(off) < 1):
        raise ValueError("tree offsets do not match the header")
    n = int(off[-1])
    if any(len(a[f"{p}t{name}"]) != n for name in ("feature", "threshold", "left", "right", "proba")):
        raise ValueError("tree arrays of different lengths")
    local = np.arange(n) - np.repeat(off[:-1], np.diff(off))
    size = np.repeat(np.diff(off), np.diff(off))
    for name in ("left", "right"):
        c = a[f"{p}t{name}"]
        if np.any((c != -1) & ((c <= local) | (c >= size))):
            raise ValueError(f"tree {name} children outside their tree")
    width = n_features + len(a[f"{p}ind"])
    if np.any(a[f"{p}tfeature"] >= width):
        raise ValueError("tree splits on a feature the detector does not have")
