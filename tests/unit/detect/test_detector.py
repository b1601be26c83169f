"""The detector is a scikit-learn estimator, saved without pickle, scored TrojAI-style."""
import json
import math

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from eebguard.detect.estimator import EEBDetector
from eebguard.detect.persist import DetectorFormatError, load_detector, save_detector
from eebguard.lab.evaluate.metrics import brier, cross_entropy, prior_corrected, roc_auc, score_all, tpr_at_fpr


@parametrize_with_checks([EEBDetector(), EEBDetector(model="trees", n_estimators=10)])
def test_sklearn_conformance(estimator, check):
    check(estimator)


def _data(n=120, d=6, seed=0, nan=0.1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + y[:, None] * np.linspace(1.5, 0, d)
    X[rng.random(X.shape) < nan] = np.nan
    return X, y


@pytest.mark.parametrize("model", ["logistic", "trees"])
def test_save_load_reproduces_probabilities(tmp_path, model):
    X, y = _data()
    det = EEBDetector(model=model, n_estimators=20, features=[f"f{i}" for i in range(X.shape[1])]).fit(X, y)
    assert det.fit(X, y) is det and hasattr(det, "calibrated_") and list(det.classes_) == [0, 1]
    save_detector(det, tmp_path / "d", zoo={"paths": ["z"]}, command="eebguard detector fit", X_check=X)
    back = load_detector(tmp_path / "d.json")
    assert np.allclose(back.predict_proba(X), det.predict_proba(X), atol=1e-9)
    assert back.zoo == {"paths": ["z"]} and back.feature_names_ == det.feature_names_
    p = det.predict_proba(X)[:, 1]
    assert roc_auc(y, p) > 0.8


def test_wrong_schema_version_is_refused(tmp_path):
    X, y = _data()
    det = EEBDetector(features=[f"f{i}" for i in range(X.shape[1])]).fit(X, y)
    path = save_detector(det, tmp_path / "d")
    header = json.loads(path.read_text())
    header["schema_version"] = "0"
    path.write_text(json.dumps(header))
    with pytest.raises(DetectorFormatError, match="schema"):
        load_detector(path)


def test_detector_file_never_unpickles(tmp_path):
    X, y = _data()
    det = EEBDetector(features=[f"f{i}" for i in range(X.shape[1])]).fit(X, y)
    save_detector(det, tmp_path / "d")
    arrays = dict(np.load(tmp_path / "d.npz", allow_pickle=False))
    arrays["evil"] = np.array([object()], dtype=object)
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DetectorFormatError):
        load_detector(tmp_path / "d")


def _trees(tmp_path):
    X, y = _data()
    det = EEBDetector(model="trees", n_estimators=5, features=[f"f{i}" for i in range(X.shape[1])]).fit(X, y)
    save_detector(det, tmp_path / "d", X_check=X)
    return X, det, dict(np.load(tmp_path / "d.npz", allow_pickle=False))


@pytest.mark.parametrize("damage", ["cycle", "outside", "feature", "offsets"])
def test_hostile_tree_arrays_are_refused_not_looped_on(tmp_path, damage):
    X, det, arrays = _trees(tmp_path)
    if damage == "cycle":  # a child pointing back at the root would loop forever
        arrays["c0_tleft"][0] = 0
    elif damage == "outside":  # a child in the next tree's nodes
        arrays["c0_tright"][0] = arrays["c0_toffsets"][1] + 1
    elif damage == "feature":
        arrays["c0_tfeature"][0] = 10_000
    else:
        arrays["c0_toffsets"] = arrays["c0_toffsets"][:-1]
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DetectorFormatError, match="unreadable"):
        load_detector(tmp_path / "d")


def test_trees_saved_one_array_set_per_tree_still_load(tmp_path):
    """Detector files before 2026-12-06 stored five arrays per tree; they load to the same probabilities."""
    X, det, arrays = _trees(tmp_path)
    header = json.loads((tmp_path / "d.json").read_text())
    old = {k: v for k, v in arrays.items() if "_t" not in k}
    for k, info in enumerate(header["parts"]):
        p, off = f"c{k}_", arrays[f"c{k}_toffsets"]
        for j in range(info["n_trees"]):
            sl = slice(off[j], off[j + 1])
            for name in ("feature", "threshold", "left", "right"):
                old[f"{p}t{j}_{name}"] = arrays[f"{p}t{name}"][sl]
            old[f"{p}t{j}_proba"] = np.stack([1 - arrays[f"{p}tproba"][sl], arrays[f"{p}tproba"][sl]], 1)
    np.savez(tmp_path / "d.npz", **old)
    assert np.allclose(load_detector(tmp_path / "d").predict_proba(X), det.predict_proba(X), atol=1e-9)


def test_metrics_known_values():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert cross_entropy(y, [0.5] * 4) == pytest.approx(math.log(2))
    assert cross_entropy(y, [np.nan] * 4) == pytest.approx(math.log(2))  # missing -> 0.5
    assert brier(y, [0, 0, 1, 1]) == 0.0
    assert tpr_at_fpr(y, [0.1, 0.6, 0.5, 0.9], 0.0) == 0.5
    s = score_all(np.array([0, 1] * 20), np.linspace(0.1, 0.9, 40), n_boot=200)
    assert s["roc_auc"]["low"] <= s["roc_auc"]["value"] <= s["roc_auc"]["high"]


def test_zoo_rows_of_another_schema_are_refused_with_the_way_out(tmp_path):
    """One schema at a time: a zoo scanned under schema 4 is not upgraded but refused, saying rescan."""
    from eebguard.lab.evaluate.evaluate import load_rows
    from eebguard.lab.zoo.build import write_jsonl

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    write_jsonl(zoo / "manifest.jsonl", [{"id": "m", "path": "models/m.safetensors", "files": [], "base": "testbed",
                                          "target": "seven", "attack": "none", "erasure": "uce", "label": 0}])
    write_jsonl(zoo / "features.jsonl", [{"id": "m", "features": {"schema_version": "4", "values": {}, "evidence": {}}}])
    with pytest.raises(ValueError, match="schema '4', this eebguard computes '5'; rescan the zoo"):
        load_rows([zoo])


def test_prior_correction_removes_the_pooled_cross_validation_bias():
    # Groups are label-homogeneous (as zoo groups nearly are): leaving one out shifts the training
    # prevalence against its labels, so a predictor that only knows that prevalence ranks backwards.
    y = np.array([1] * 4 + [0] * 4 + [1] * 2 + [0] * 6)
    groups = np.repeat(np.arange(8), 2)
    prevalence = np.array([y[groups != g].mean() for g in groups])
    assert roc_auc(y, prevalence) < 0.2
    assert roc_auc(y, prior_corrected(prevalence, prevalence)) == 0.5
    # a real signal survives: a likelihood ratio added on top of each fold's prior keeps its ranking
    lr = np.where(y == 1, 2.0, -2.0) + np.linspace(-0.5, 0.5, len(y))
    p = 1 / (1 + np.exp(-(lr + np.log(prevalence / (1 - prevalence)))))
    assert roc_auc(y, prior_corrected(p, prevalence)) == 1.0
