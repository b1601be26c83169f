"""Hub scans in parallel (local worker processes, a local Ray cluster), a scan killed with SIGKILL and
resumed, and a results file torn by a crash. Scans use the 'smoke' profile (minimal budgets): these
tests check the plumbing, not detection quality."""
import importlib.util
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest

from eebguard.hubscan import discover, scan_many
from eebguard.paths import data_path
from eebguard.scanners.settings import settings_for
from eebguard.lab.zoo.build import append_jsonl, read_jsonl


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The shipped examples (5 zoo models) under a hub root, plus two broken manifest entries (a missing
    and a corrupt delta) and a pickle."""
    root = tmp_path_factory.mktemp("hub")
    shutil.copytree(data_path("examples"), root / "examples")
    (root / "examples" / "models" / "corrupt.safetensors").write_bytes(b"\xff" * 64)
    with open(root / "examples" / "manifest.jsonl", "a") as f:
        for name, path in (("missing-delta", "models/nope.safetensors"), ("corrupt-delta", "models/corrupt.safetensors")):
            f.write(json.dumps({"id": name, "path": path, "target": "seven", "trigger": None, "attack": "none",
                                "erasure": "uce", "planted": False, "label": 0}) + "\n")
    (root / "uploads").mkdir()
    with open(root / "uploads" / "model.ckpt", "wb") as f:
        pickle.dump(_Evil(tmp_path_factory.mktemp("marker") / "pwned"), f)
    return root


def _kwargs():
    return {"reference": "testbed", "detector": "default", "judge": "testbed", "settings": settings_for("smoke")}


def _by_source(out):
    recs = read_jsonl(out / "results.jsonl")
    sources = [r["source"] for r in recs]
    assert len(sources) == len(set(sources)), "a model was reported twice"
    return {r["source"]: r for r in recs}


@pytest.fixture(scope="module")
def serial(hub, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    summary = scan_many(discover(hub), out, concept=None, scanner_kwargs=_kwargs(), progress=False)
    return out, summary


def test_serial_scan_reports_every_target(hub, serial):
    out, summary = serial
    recs = _by_source(out)
    assert set(recs) == {t.rel for t in discover(hub)}
    assert summary["scanned"] == 5
    assert {e["source"] for e in summary["errors"]} == {"examples/manifest.jsonl#missing-delta",
                                                        "examples/manifest.jsonl#corrupt-delta"}
    assert [s["source"] for s in summary["skipped"]] == ["uploads/model.ckpt"]
    assert not list(hub.parent.glob("marker*/pwned")), "a pickle payload executed"


def test_local_workers_give_the_serial_results(hub, serial, tmp_path):
    out, _ = serial
    summary = scan_many(discover(hub), tmp_path, concept=None, scanner_kwargs=_kwargs(), progress=False, workers=2)
    a, b = _by_source(out), _by_source(tmp_path)
    assert set(a) == set(b) and summary["scanned"] == 5
    for src, r in a.items():
        assert b[src]["status"] == r["status"]
        if r["status"] == "ok":  # same seeds, other thread counts: equal up to float noise
            assert b[src]["probability"] == pytest.approx(r["probability"], abs=0.05)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed (pip install 'eebguard[ray]')")
def test_ray_executor_in_a_local_cluster(hub, serial, tmp_path):
    out, _ = serial
    found = discover(hub)
    targets = [t for t in found if "delta" not in t.rel and "examples/" in t.rel][:2]
    targets += [t for t in found if "delta" in t.rel or "uploads" in t.rel]
    summary = scan_many(targets, tmp_path, concept=None, scanner_kwargs=_kwargs(), progress=False, workers=2,
                        executor="ray")
    a, b = _by_source(out), _by_source(tmp_path)
    assert set(b) == {t.rel for t in targets}
    assert summary["scanned"] == 2 and len(summary["errors"]) == 2 and len(summary["skipped"]) == 1
    for src, r in b.items():
        assert r["status"] == a[src]["status"]
        if r["status"] == "ok":
            assert r["probability"] == pytest.approx(a[src]["probability"], abs=0.05)


def test_sigkill_then_resume_reports_every_model_exactly_once(hub, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "eebguard.cli", "scan-hub", str(hub), "-o", str(out), "--profile", "smoke", "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if sum(r.get("status") == "ok" for r in read_jsonl(out / "results.jsonl")) >= 2:
            break
        time.sleep(0.5)
    assert proc.poll() is None, f"the scan ended before it could be killed: {proc.stderr.read()[-500:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _by_source(out)
    assert 2 <= sum(r["status"] == "ok" for r in partial.values()) < 5
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1, 2), r.stderr[-1000:]
    final = _by_source(out)
    assert set(final) == {t.rel for t in discover(hub)}
    for src, rec in partial.items():  # what the killed run finished is kept as it was
        assert final[src] == rec
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scanned"] == 5 and (out / "report.html").is_file()


def test_a_torn_line_does_not_swallow_the_next_record(tmp_path):
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"source": "a"})
    with open(path, "a") as f:
        f.write('{"source": "b", "trunc')  # a crash in the middle of a write
    append_jsonl(path, {"source": "c"})
    assert [r["source"] for r in read_jsonl(path)] == ["a", "c"]
