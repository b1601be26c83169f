"""pytest plugin (``pytest11`` entry point ``eebguard``): evaluate any detector on any zoo from a test suite.

Options: ``--eeb-zoo DIR`` (repeatable; scanned zoos to score on), ``--eeb-fit-zoo DIR`` (fit the detector
and baselines there instead of loading one), ``--eeb-detector FILE`` (default: the richest shipped detector
whose scanners ran in every scored scan, ``eebguard.detect.shipped``), ``--eeb-reference-free`` (score, and
fit on, the zoos' scans made without a reference, ``eebguard zoo scan ZOO --reference none``),
gates ``--eeb-min-auroc``, ``--eeb-max-ce``, ``--eeb-min-tpr`` (at 5% FPR), ``--eeb-results PATH`` (JSON
written when the session ends), ``--eeb-run-slow`` and ``--eeb-run-gpu``.

Fixtures: ``eeb_zoo`` (the scanned models), ``eeb_detector``, ``eeb_evaluation`` (the evaluation dict,
computed once), ``eeb_scanner`` (a function scanning a pipeline into Features), ``eeb_tiny_pipelines``
(the testbed base, a shallow-backdoored + UCE-erased model and a clean UCE-erased one), ``eeb_results``
(record your own metrics into the results JSON). Markers: ``eeb_slow``, ``eeb_gpu``.
A gate that fails makes the session fail, with the metric and threshold in the summary.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

_STATE_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser):
    g = parser.getgroup("eebguard", "eebguard detector evaluation")
    g.addoption("--eeb-zoo", action="append", default=[], help="scanned zoo folder to evaluate on (repeatable)")
    g.addoption("--eeb-fit-zoo", action="append", default=[], help="zoo to fit the detector and baselines on")
    g.addoption("--eeb-detector", default=None, help="detector file (default: the shipped one)")
    g.addoption("--eeb-reference-free", action="store_true",
                help="use the zoos' scans made without a reference (zoo scan --reference none)")
    g.addoption("--eeb-min-auroc", type=float, default=None, help="fail the session below this ROC-AUC")
    g.addoption("--eeb-max-ce", type=float, default=None, help="fail the session above this cross-entropy")
    g.addoption("--eeb-min-tpr", type=float, default=None, help="fail the session below this TPR at 5%% FPR")
    g.addoption("--eeb-results", default=None, help="write the evaluation results JSON here")
    g.addoption("--eeb-run-slow", action="store_true", help="run tests marked eeb_slow")
    g.addoption("--eeb-run-gpu", action="store_true", help="run tests marked eeb_gpu (needs CUDA)")


def pytest_configure(config):
    config.addinivalue_line("markers", "eeb_slow: long-running eebguard evaluation (needs --eeb-run-slow)")
    config.addinivalue_line("markers", "eeb_gpu: needs a CUDA device (and --eeb-run-gpu)")
    config.stash[_STATE_KEY] = {"evaluation": None, "recorded": {}, "gates": []}


def pytest_collection_modifyitems(config, items):
    import torch

    slow = pytest.mark.skip(reason="eeb_slow: pass --eeb-run-slow to run")
    gpu = pytest.mark.skip(reason="eeb_gpu: needs --eeb-run-gpu and a CUDA device")
    for item in items:
        if "eeb_slow" in item.keywords and not config.getoption("--eeb-run-slow"):
            item.add_marker(slow)
        if "eeb_gpu" in item.keywords and not (config.getoption("--eeb-run-gpu") and torch.cuda.is_available()):
            item.add_marker(gpu)


class Results:
    """What the session records; written to ``--eeb-results`` at the end."""

    def __init__(self, state: dict):
        self._state = state

    def record(self, name: str, value) -> None:
        self._state["recorded"][name] = value


@pytest.fixture(scope="session")
def eeb_results(request) -> Results:
    return Results(request.config.stash[_STATE_KEY])


@pytest.fixture(scope="session")
def eeb_zoo(request) -> list[dict]:
    zoos = request.config.getoption("--eeb-zoo")
    if not zoos:
        pytest.skip("no --eeb-zoo given")
    from eebguard.lab.evaluate.evaluate import load_rows

    return load_rows(zoos, request.config.getoption("--eeb-reference-free"))


@pytest.fixture(scope="session")
def eeb_detector(request):
    return _detector(request.config)


def _detector(cfg):
    """Fitted on ``--eeb-fit-zoo`` (on the features its scans have), else ``--eeb-detector``. No fitted
    detector ships with feature schema 5 (the scan's own answer is the contrastive rule)."""
    from eebguard.detect.persist import load_detector
    from eebguard.lab.evaluate.evaluate import load_rows

    if cfg.getoption("--eeb-fit-zoo"):
        from eebguard.detect.estimator import reference_free_features
        from eebguard.lab.evaluate.evaluate import fit_detector

        free = cfg.getoption("--eeb-reference-free")
        return fit_detector(load_rows(cfg.getoption("--eeb-fit-zoo"), free), reference_free_features() if free else None)
    if cfg.getoption("--eeb-detector"):
        return load_detector(cfg.getoption("--eeb-detector"))
    raise pytest.UsageError("no detector ships with this feature schema: give --eeb-detector or --eeb-fit-zoo")


@pytest.fixture(scope="session")
def eeb_evaluation(request, eeb_zoo, eeb_detector) -> dict:
    res = request.config.stash[_STATE_KEY]["evaluation"] = _evaluation(request.config, eeb_detector)
    return res


def _evaluation(cfg, detector) -> dict:
    from eebguard.lab.evaluate.evaluate import evaluate

    return evaluate(cfg.getoption("--eeb-zoo"), detector=detector, fit_zoos=cfg.getoption("--eeb-fit-zoo") or None,
                    n_boot=200, with_splits=False, reference_free=cfg.getoption("--eeb-reference-free"))


@pytest.fixture(scope="session")
def eeb_scanner():
    """``scan(pipe, concept, reference=None, judge="testbed", **settings) -> Features``."""
    from eebguard.judges import get_judge
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext, ScanSettings, run_scanners

    def scan(pipe, concept, reference=None, judge="testbed", **settings):
        j = get_judge(judge) if isinstance(judge, str) else judge
        ctx = ScanContext(pipe, concept, concept_prompts(concept), reference, j, ScanSettings(**settings))
        return run_scanners(ctx)

    return scan


@pytest.fixture(scope="session")
def eeb_tiny_pipelines():
    """``{"base", "clean_erased", "backdoored_erased"}`` on the shipped testbed (closed-form edits, seconds)."""
    from eebguard.models import load
    from eebguard.models.formats import copy_pipeline
    from eebguard.probes import concept_prompts
    from eebguard.lab.attacks import get_attack
    from eebguard.erasure import get_erasure

    base = load("testbed").pipe
    cp = concept_prompts("seven")
    clean = copy_pipeline(base)
    get_erasure("uce").erase(clean, cp)
    bd = copy_pipeline(base)
    get_attack("shallow").plant(bd, cp, "sks")
    get_erasure("uce").erase(bd, cp)
    return {"base": base, "clean_erased": clean, "backdoored_erased": bd, "concept": "seven", "trigger": "sks"}


def _gates(config, res: dict) -> list[str]:
    failures = []
    checks = (("--eeb-min-auroc", res["roc_auc"]["value"], "ROC-AUC", lambda v, t: v >= t),
              ("--eeb-max-ce", res["cross_entropy"]["value"], "cross-entropy", lambda v, t: v <= t),
              ("--eeb-min-tpr", res["tpr_at_fpr"]["0.05"]["value"], "TPR at 5% FPR", lambda v, t: v >= t))
    for opt, value, label, ok in checks:
        thr = config.getoption(opt)
        if thr is not None and (math.isnan(value) or not ok(value, thr)):
            failures.append(f"{label} {value:.4f} fails the gate {opt} {thr}")
    return failures


def pytest_sessionfinish(session, exitstatus):
    cfg = session.config
    state = cfg.stash.get(_STATE_KEY, None)
    if state is None:
        return
    res = state["evaluation"]
    gated = any(cfg.getoption(o) is not None for o in ("--eeb-min-auroc", "--eeb-max-ce", "--eeb-min-tpr"))
    if gated and res is None and cfg.getoption("--eeb-zoo"):
        # gates were asked for but no test used the evaluation: compute it now
        res = state["evaluation"] = _evaluation(cfg, _detector(cfg))
    if res is not None:
        state["gates"] = _gates(cfg, res)
        if state["gates"]:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    path = cfg.getoption("--eeb-results")
    if path:
        out = {"evaluation": {k: v for k, v in (res or {}).items() if k != "predictions"} if res else None,
               "recorded": state["recorded"], "gates_failed": state["gates"]}
        Path(path).write_text(json.dumps(out, indent=2, default=float))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config.stash.get(_STATE_KEY, None)
    if not state or state["evaluation"] is None:
        return
    res = state["evaluation"]
    terminalreporter.section("eebguard evaluation")
    terminalreporter.write_line(
        f"models {res['n_models']}  ROC-AUC {res['roc_auc']['value']:.3f}  cross-entropy "
        f"{res['cross_entropy']['value']:.3f}  TPR@5%FPR {res['tpr_at_fpr']['0.05']['value']:.3f}")
    for g in state["gates"]:
        terminalreporter.write_line(f"GATE FAILED: {g}", red=True)
