"""The detector is a scikit-learn estimator, saved without pickle, scored TrojAI-style."""
import json
import math

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from eebguard.detect.estimator import EEBDetector
from eebguard.detect.persist import DetectorFormatError, load_detector, save_detector
from eebguard.evaluate.metrics import brier, cross_entropy, prior_corrected, roc_auc, score_all, tpr_at_fpr


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


def test_schema1_zoo_rows_upgrade_exactly_and_other_versions_are_refused(tmp_path):
    from eebguard.detect.baselines import PROBE_FEATURES
    from eebguard.evaluate.evaluate import load_rows
    from eebguard.zoo.scan import upgrade_row

    probe = {"probe.max_image_reach": 0.5, "probe.mean_image_reach": 0.125, "probe.top3_image_reach": 0.25,
             "probe.words": ["feed", "ail"]}
    v1 = {"id": "m", "features": {"schema_version": "1", "values": {"reach.name_image": 0.1}, "evidence": {}},
          "baseline_probe": probe}
    up = upgrade_row(v1)
    assert up["features"]["schema_version"] == "2" and up["features"]["upgraded_from"] == "1"
    assert {k: up["features"]["values"][k] for k in PROBE_FEATURES} == {k: probe[k] for k in PROBE_FEATURES}
    assert up["features"]["values"]["reach.name_image"] == 0.1
    assert upgrade_row({**v1, "baseline_probe": {}}) == {**v1, "baseline_probe": {}}  # nothing to move: unchanged

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "manifest.jsonl").write_text(json.dumps({"id": "m", "path": "models/m.safetensors", "attack": "none",
                                                    "target": "seven", "label": 0, "planted": False}) + "\n")
    (zoo / "features.jsonl").write_text(json.dumps({**v1, "baseline_probe": {}}) + "\n")
    with pytest.raises(ValueError, match="schema '1'.*rescan"):
        load_rows([zoo])
    (zoo / "features.jsonl").write_text(json.dumps(v1) + "\n")
    with pytest.raises(ValueError, match="schema '2'.*eebguard zoo replay"):  # upgraded to 2, and 3 needs the replay
        load_rows([zoo])


def test_zoo_replay_moves_schema2_rows_to_3_with_the_replay_of_the_recorded_erasure(tmp_path):
    """`eebguard zoo replay`: the recorded triggers judged in the reference erased by the entry's method,
    without the models; a row without a claim or trigger moves too, its replay features absent."""
    from eebguard.evaluate.evaluate import load_rows
    from eebguard.zoo.scan import replay_zoo

    name = [5757]  # `seven</w>`: the erased name itself, which the UCE replay must not answer
    rows = [{"id": "a", "features": {"schema_version": "2", "values": {"reach.name_image": 0.0}, "evidence": {
                "hard_trigger": {"triggers": [{"ids": name, "text": "seven", "image_reach": 1.0}]}}}},
            {"id": "b", "features": {"schema_version": "2", "values": {"reach.name_image": 0.5}, "evidence": {}}}]
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "manifest.jsonl").write_text("".join(json.dumps({
        "id": i, "path": f"models/{i}.safetensors", "attack": "none", "target": "seven", "label": 0,
        "planted": False, "erasure": e}) + "\n" for i, e in (("a", "uce"), ("b", "not-a-method"))))
    (zoo / "features.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert replay_zoo(zoo, progress=False)["replayed_now"] == 2
    a, b = (r["scan"]["features"] for r in load_rows([zoo]))
    replayed = a["evidence"]["erasure_replay"]
    assert replayed["method"] == "uce" and replayed["triggers"][0]["replay_reach"] <= 0.25
    assert a["values"]["replay.gain"] == 1.0 - replayed["triggers"][0]["replay_reach"] == a["values"]["replay.max_gain"]
    assert a["upgraded_from"] == "2" and a["evidence"]["scanners"]["erasure_replay"]["status"] == "ok"
    assert b["values"] == {"reach.name_image": 0.5}  # nothing claimed that can be replayed: absent, not zero
    assert b["evidence"]["scanners"]["erasure_replay"]["reason"] == "no claimed erasure to replay"
    assert replay_zoo(zoo, progress=False)["replayed_now"] == 0  # schema 3 rows are left alone
    # the claim changes (the erasure removed `four` too): replay that row again, in place
    lines = (zoo / "manifest.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    (zoo / "manifest.jsonl").write_text("\n".join([json.dumps({**first, "also_erased": ["four"]})] + lines[1:]) + "\n")
    with pytest.raises(ValueError, match="redo needs ids"):
        replay_zoo(zoo, progress=False, redo=True)
    assert replay_zoo(zoo, progress=False, ids=["a"], redo=True)["replayed_now"] == 1
    again = load_rows([zoo])[0]["scan"]["features"]
    assert again["evidence"]["erasure_replay"]["also_erased"] == ["four"] and again["upgraded_from"] == "2"
    assert again["values"]["replay.gain"] == 1.0 - again["evidence"]["erasure_replay"]["triggers"][0]["replay_reach"]
    # the recorded zoos are schema 3, which schema 4 reads unchanged for scans with a reference: a redo reaches them
    from eebguard.zoo.build import read_jsonl, write_jsonl

    path = zoo / "features.jsonl"
    write_jsonl(path, [{**r, "features": {**r["features"], "schema_version": "3"}} for r in read_jsonl(path)])
    assert replay_zoo(zoo, progress=False, ids=["a"], redo=True)["replayed_now"] == 1


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
