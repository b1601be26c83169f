"""The hub soak at test size (benchmarks/bench_hub_soak.py): 120 entries, two SIGKILLs of the whole scan
and resumes, a worker killed mid-model, a model file truncated mid-scan, a per-model budget: nothing
lost, duplicated or corrupt. The scans use the 'smoke' profile: the invariants are about the hub scan's
bookkeeping, not what the scanners find."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_hub_soak_loses_nothing(tmp_path):
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_hub_soak.py"), "--entries", "120",
                        "--unique", "1", "--kills", "2", "--kill-after-s", "20", "--profile", "smoke", "--json", str(out)],
                       capture_output=True, text=True, timeout=1500, cwd=ROOT)
    res = json.loads(out.read_text())
    inv = res["invariants"]
    assert inv["entries"] >= 100 and inv["records"] == inv["entries"], r.stdout[-2000:] + r.stderr[-2000:]
    assert inv["lost"] == inv["duplicated"] == inv["corrupt"] == inv["unexpected"] == 0
    assert inv["summary_counts_match"] and inv["finished_records_kept"] and not res["pickle_executed"]
    faults = [e.get("fault") for e in res["faults"]]
    assert faults.count("scan killed (SIGKILL)") == 2 and "model file truncated mid-scan" in faults
    assert res["budget"]["timed_out"] >= 1 and res["budget"]["records"] == 2 and res["budget"]["corrupt"] == 0
    assert res["invariants_hold"] and r.returncode == 0
