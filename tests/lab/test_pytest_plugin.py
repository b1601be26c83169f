"""The pytest plugin works from a separate project: fixtures, results JSON, and gates that fail."""
import json

import numpy as np

from eebguard.features import SCHEMA_VERSION

def write_synthetic_zoo(path, n=48, seed=0, separable=True):
    """A scanned zoo whose features are drawn so positives stand out (plugin mechanics, not detector
    quality: the real numbers come from real zoos in docs/evaluation.md)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    man, feats = [], []
    for i in range(n):
        attack = ["none", "surface", "shallow", "deep"][i % 4]
        label = int(attack in ("shallow", "deep") and i % 3 != 0)
        sig = (0.85 if label else 0.1) if separable else 0.5
        eid = f"m{i}-x-{attack}-s0-uce"
        man.append({"id": eid, "path": f"models/{eid}.safetensors", "attack": attack, "erasure": ["uce", "esd_x"][i % 2],
                    "family": ["digits", "shapes"][(i // 2) % 2], "target": "seven", "trigger": "sks",
                    "planted": attack != "none", "label": label, "hard_negative": None})
        vals = {"hard.best_image_reach": float(np.clip(sig + rng.normal(0, 0.1), 0, 1)),
                "attn.ftt_trigger_ratio": float(1 + rng.normal(0, 0.1)),
                "soft.reach": float(rng.uniform()), "probe.max_image_reach": float(rng.uniform(0, 0.3))}
        feats.append({"id": eid, "features": {"schema_version": SCHEMA_VERSION, "values": vals, "evidence": {}}})
    (path / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in man))
    (path / "features.jsonl").write_text("".join(json.dumps(f) + "\n" for f in feats))
    return path


TEST_FILE = """
def test_evaluation(eeb_evaluation, eeb_results):
    eeb_results.record("n", eeb_evaluation["n_models"])
    assert eeb_evaluation["n_models"] == 48
    assert 0 <= eeb_evaluation["roc_auc"]["value"] <= 1

def test_zoo_fixture(eeb_zoo):
    assert {r["attack"] for r in eeb_zoo} == {"none", "surface", "shallow", "deep"}
"""


def test_plugin_passing_gate(pytester, tmp_path):
    zoo = write_synthetic_zoo(tmp_path / "zoo")
    pytester.makepyfile(TEST_FILE)
    res_path = tmp_path / "results.json"
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "eebguard.lab.pytest_plugin", f"--eeb-zoo={zoo}", f"--eeb-fit-zoo={zoo}",
                                      "--eeb-min-auroc=0.9", f"--eeb-results={res_path}")
    r.assert_outcomes(passed=2)
    assert r.ret == 0
    out = json.loads(res_path.read_text())
    assert out["recorded"]["n"] == 48 and out["gates_failed"] == []
    assert out["evaluation"]["roc_auc"]["value"] >= 0.9
    r.stdout.fnmatch_lines(["*eebguard evaluation*", "*ROC-AUC*"])


def test_plugin_failing_gate(pytester, tmp_path):
    zoo = write_synthetic_zoo(tmp_path / "zoo", separable=False)
    pytester.makepyfile(TEST_FILE)
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "eebguard.lab.pytest_plugin", f"--eeb-zoo={zoo}", f"--eeb-fit-zoo={zoo}",
                                      "--eeb-min-auroc=0.95")
    r.assert_outcomes(passed=2)  # the tests pass; the gate fails the session
    assert r.ret == 1
    r.stdout.fnmatch_lines(["*GATE FAILED: ROC-AUC*--eeb-min-auroc 0.95*"])


def test_plugin_refuses_a_zoo_record_of_an_earlier_schema_and_asks_for_a_detector(pytester):
    """The recorded zoos were scanned under feature schema 4: read as schema 5 they are refused with the
    way out (rescan); and without --eeb-detector or --eeb-fit-zoo there is no detector to score with."""
    from pathlib import Path

    zoo = Path(__file__).resolve().parents[2] / "experiments" / "zoo-records" / "replay-check"
    pytester.makepyfile("""
def test_detector(eeb_zoo):
    assert eeb_zoo
""")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "eebguard.lab.pytest_plugin", f"--eeb-zoo={zoo}")
    assert r.ret != 0
    r.stdout.fnmatch_lines(["*scanned with feature schema '*', this eebguard computes '5'*rescan the zoo*"])


def test_plugin_markers_and_skip_without_zoo(pytester):
    pytester.makepyfile("""
import pytest

@pytest.mark.eeb_slow
def test_slow():
    assert False

@pytest.mark.eeb_gpu
def test_gpu():
    assert False

def test_needs_zoo(eeb_zoo):
    assert False
""")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "eebguard.lab.pytest_plugin")
    r.assert_outcomes(skipped=3)


def test_plugin_is_opt_in(pytester):
    """Installing eebguard adds nothing to a user's pytest: the --eeb-* options exist only with
    ``-p eebguard.lab.pytest_plugin`` (or ``pytest_plugins`` in a conftest)."""
    pytester.makepyfile("def test_x():\n    pass\n")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--eeb-zoo=somewhere")
    assert r.ret != 0
    r.stderr.fnmatch_lines(["*unrecognized arguments: --eeb-zoo*"])
