"""Hub-scan benchmark: throughput (models per minute) and memory, local executor (1 and 2 workers) vs
Ray (2 workers), and a crash drill: ``kill -9`` in the middle of a scan, then ``--resume``.

The hub is built from a zoo (any ``eebguard zoo build`` output): its first ``--models`` entries, plus
two broken entries (a missing and a corrupt delta) and one pickle checkpoint that must never be loaded.

    python benchmarks/bench_hub_scan.py --zoo zoos/heldout-closed-form --zoo zoos/default --models 20
    python benchmarks/bench_hub_scan.py --zoo zoos/heldout-closed-form --zoo zoos/default --drill-only --drill-profile default

Memory is the peak resident set of the scanning process tree (sampled every 0.2 s from /proc); per
worker it is the peak of the largest process.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from eebguard.lab.tables import table, write

from eebguard.lab.zoo.build import read_jsonl  # noqa: E402


class _Payload:
    def __reduce__(self):  # executed only if something unpickles the file
        return (os.system, ("touch /tmp/eebguard-bench-pwned",))


def build_hub(zoos: list[Path], n: int, dest: Path) -> dict:
    """``n`` models taken in order from the zoos (one hub folder per zoo), two broken entries, a pickle."""
    hub = dest / "hub"
    taken = 0
    for k, zoo in enumerate(zoos):
        entries = [json.loads(line) for line in (zoo / "manifest.jsonl").read_text().splitlines() if line.strip()]
        entries = entries[: n - taken]
        if not entries and k:
            break
        folder = hub / f"zoo{k}"
        (folder / "models").mkdir(parents=True)
        lines = []
        for e in entries:
            for rel in dict.fromkeys([e["path"], *e.get("files", [])]):
                if (zoo / rel).is_file():
                    shutil.copy2(zoo / rel, folder / rel)
            lines.append(json.dumps(e))
        taken += len(entries)
        if k == 0:  # a delta with a header that lies about its length, and one that is missing
            (folder / "models" / "corrupt.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}" + b"\xff" * 32)
            for name, path in (("broken-missing", "models/missing.safetensors"), ("broken-corrupt", "models/corrupt.safetensors")):
                lines.append(json.dumps({**entries[0], "id": name, "path": path, "files": [path]}))
        (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    if taken < n:
        raise SystemExit(f"the zoos hold {taken} models; --models {n} asked")
    (hub / "uploads").mkdir()
    with open(hub / "uploads" / "community.ckpt", "wb") as f:
        pickle.dump(_Payload(), f)
    return {"root": hub, "models": n, "broken": 2, "pickles": 1}


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack += children.get(p, [])
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemorySampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop, self.peak_total, self.peak_process = pid, False, 0.0, 0.0

    def run(self):
        while not self.stop:
            rss = [_rss_mb(p) for p in _tree(self.pid)]
            self.peak_total = max(self.peak_total, sum(rss))
            self.peak_process = max(self.peak_process, max(rss, default=0.0))
            time.sleep(0.2)


def _cmd(hub: Path, out: Path, profile: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "eebguard.cli", "scan-hub", str(hub), "-o", str(out), "--profile", profile, "-q", *extra]


def timed_run(hub: Path, out: Path, profile: str, extra: list[str]) -> dict:
    t0 = time.perf_counter()
    p = subprocess.Popen(_cmd(hub, out, profile, extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mem = MemorySampler(p.pid)
    mem.start()
    _, err = p.communicate()
    mem.stop = True
    secs = time.perf_counter() - t0
    recs = read_jsonl(out / "results.jsonl")
    ok = sum(r.get("status") == "ok" for r in recs)
    return {"seconds": round(secs, 1), "exit_code": p.returncode, "verdicts": ok,
            "models_per_min": round(60 * ok / secs, 2), "peak_rss_total_mb": round(mem.peak_total),
            "peak_rss_process_mb": round(mem.peak_process), "stderr_tail": err.strip().splitlines()[-1:] if p.returncode > 1 else []}


def drill(hub: Path, out: Path, profile: str, kill_after: int, expected: set[str]) -> dict:
    """Start a scan, SIGKILL its whole process group after ``kill_after`` verdicts, then resume."""
    p = subprocess.Popen(_cmd(hub, out, profile, []), start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    while p.poll() is None and sum(r.get("status") == "ok" for r in read_jsonl(out / "results.jsonl")) < kill_after:
        time.sleep(0.5)
    killed_mid_scan = p.poll() is None
    if killed_mid_scan:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    before = read_jsonl(out / "results.jsonl")
    r = subprocess.run(_cmd(hub, out, profile, ["--resume"]), capture_output=True, text=True)
    recs = read_jsonl(out / "results.jsonl")
    sources = [x["source"] for x in recs]
    summary = json.loads((out / "summary.json").read_text())
    return {"profile": profile, "killed_mid_scan": killed_mid_scan, "verdicts_before_kill": sum(x.get("status") == "ok" for x in before),
            "records": len(recs), "each_exactly_once": len(sources) == len(set(sources)) and set(sources) == expected,
            "kept_unchanged": all(x in recs for x in before), "exit_code": r.returncode,
            "verdicts": summary["scanned"], "findings": len(summary["findings"]), "errors": len(summary["errors"]),
            "skipped": len(summary["skipped"]), "pickle_executed": os.path.exists("/tmp/eebguard-bench-pwned")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True, action="append", help="a built zoo folder (manifest.jsonl + models/); repeatable")
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--profile", default="fast", help="scan profile of the throughput runs")
    ap.add_argument("--drill-profile", default="fast", help="scan profile of the kill -9 / --resume drill")
    ap.add_argument("--drill-only", action="store_true")
    ap.add_argument("--no-ray", action="store_true")
    a = ap.parse_args(argv)
    from eebguard.hubscan import discover

    with tempfile.TemporaryDirectory() as tmp:
        hub = build_hub([Path(z) for z in a.zoo], a.models, Path(tmp))
        expected = {t.rel for t in discover(hub["root"])}
        rows = []
        if not a.drill_only:
            runs = [("local", 1, []), ("local", 2, ["--workers", "2"])]
            if not a.no_ray:
                runs.append(("ray", 2, ["--workers", "2", "--executor", "ray"]))
            for executor, workers, extra in runs:
                res = timed_run(hub["root"], Path(tmp) / f"out-{executor}-{workers}", a.profile, extra)
                rows.append({"executor": executor, "workers": workers, "profile": a.profile, **res})
                print(table([rows[-1]], list(rows[-1])[:9]), flush=True)
        d = drill(hub["root"], Path(tmp) / "out-drill", a.drill_profile, kill_after=max(2, a.models // 3), expected=expected)
    if rows:
        print(table(rows, ["executor", "workers", "profile", "seconds", "verdicts", "models_per_min",
                           "peak_rss_total_mb", "peak_rss_process_mb", "exit_code"]))
    print(table([d], list(d)))
    name = "hub_scan" if not a.drill_only else f"hub_scan_drill_{a.drill_profile}"
    path = write(name, {"zoo": a.zoo, "hub": {k: v for k, v in hub.items() if k != "root"}, "runs": rows, "drill": d,
                        "command": "python benchmarks/" + Path(__file__).name + " " + " ".join(argv or sys.argv[1:])})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
