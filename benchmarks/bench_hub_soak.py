"""Hub soak: a hub of many entries (tiny delta models over the testbed, copies and symlinks of them, ~10%
broken entries of every hostile kind), scanned by ``eebguard scan-hub`` with the fast profile (``--profile``) and 2
workers while faults are injected, then checked for what must never happen.

Faults: a worker process killed mid-model, the whole scan killed with SIGKILL several times and
resumed, a model file truncated while the hub is being scanned, a model that cannot finish inside its
per-model budget (``--budget-s``), and an output folder that fills up (a size-limited tmpfs; skipped
where mounting one is not allowed).

Invariants: every entry exactly once (result, error or skipped); no corrupt record; the summary's
counts equal the records'; what a resumed scan found finished is kept byte for byte (never rescanned).

    python benchmarks/bench_hub_soak.py                      # 1,000 entries (writes results/hub_soak.json)
    python benchmarks/bench_hub_soak.py --entries 120 --kills 2 --json /tmp/soak.json   # the test's size
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _delta_variant(src: Path, dst: Path, seed: int) -> None:
    """A copy of a delta with one weight nudged: new content, the same kind of model."""
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(src))
    name = sorted(tensors)[seed % len(tensors)]
    t = tensors[name].clone()
    t.view(-1)[seed % t.numel()] += 1e-3 * (1 + seed)
    tensors[name] = t
    save_file(tensors, str(dst), metadata=meta)


BROKEN_KINDS = ("truncated", "lying_header", "pickle", "fifo", "broken_link", "escaping_link", "bad_index",
                "odd_name", "manifest_line")


def build_hub(root: Path, entries: int, unique: int, seed: int = 0) -> dict:
    """The hub: ``unique`` distinct deltas, copies and symlinks of them up to ~90% of ``entries``, the
    rest broken entries cycling through BROKEN_KINDS. Returns counts per kind."""
    from eebguard.paths import data_path
    from eebguard.records import read_jsonl

    rng = random.Random(seed)
    root.mkdir(parents=True)
    examples = data_path("examples")
    src = examples / next(e for e in read_jsonl(examples / "manifest.jsonl") if e["id"] == "seven-none-s0-uce")["path"]
    models = root / "models"
    models.mkdir()
    uniques = []
    for i in range(unique):
        p = models / f"unique-{i:03d}.safetensors"
        _delta_variant(src, p, seed * 1000 + i)
        uniques.append(p)
    counts = {"unique": unique, "copy": 0, "symlink": 0, **dict.fromkeys(BROKEN_KINDS, 0)}
    n_broken = max(len(BROKEN_KINDS), entries // 10)
    n_good = entries - n_broken - unique
    outside = Path(tempfile.mkdtemp(prefix="soak-outside-"))
    for i in range(n_good):
        target = rng.choice(uniques)
        d = root / f"org{i % 37:02d}"
        d.mkdir(exist_ok=True)
        if i % 3 == 0:
            os.symlink(os.path.relpath(target, d), d / f"link-{i:04d}.safetensors")
            counts["symlink"] += 1
        else:
            shutil.copy(target, d / f"copy-{i:04d}.safetensors")
            counts["copy"] += 1
    bad = root / "broken"
    bad.mkdir()
    raw = src.read_bytes()
    for i in range(n_broken):
        kind = BROKEN_KINDS[i % len(BROKEN_KINDS)]
        counts[kind] += 1
        p = bad / f"{kind}-{i:04d}.safetensors"
        if kind == "truncated":
            p.write_bytes(raw[: len(raw) // 2])
        elif kind == "lying_header":
            p.write_bytes((10**12).to_bytes(8, "little") + raw[8:])
        elif kind == "pickle":
            with open(p.with_suffix(".bin"), "wb") as f:
                pickle.dump(_Evil(str(outside / "pwned")), f)
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "broken_link":
            os.symlink(bad / "nowhere", p)
        elif kind == "escaping_link":
            os.symlink(src, p)
        elif kind == "bad_index":
            p = bad / f"{kind}-{i:04d}"
            p.mkdir()
            (p / "model_index.json").write_text('{"_class_name": "EvilPipeline", "unet": ["os", "system"]}')
        elif kind == "odd_name":
            (bad / os.fsdecode(f"odd-\n{i:04d}-\xff".encode("utf-8", "surrogateescape") + b"\xfe.safetensors")
             ).write_bytes(b"garbage")
        elif kind == "manifest_line":
            z = bad / f"zoo-{i:04d}"
            z.mkdir()
            (z / "manifest.jsonl").write_bytes(b'{"id": "x", "path": "../../escape.safetensors"}\n' + b"[" * 100_000 + b"\n")
    return {"counts": counts, "marker": str(outside / "pwned")}


PROFILE = "fast"  # --profile: the scan budgets (the test runs the soak with "smoke": plumbing, not detection)


def _cli(root: Path, out: Path, extra=(), workers: int = 2) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "eebguard.cli", "scan-hub", str(root), "-o", str(out), "--concept", "seven",
           "--claimed-erasure", "uce", "--profile", PROFILE, "--workers", str(workers), "-q", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _records(out: Path):
    from eebguard.records import jsonl_lines

    return jsonl_lines(out / "results.jsonl")


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(x) for x in out.split()]


def _is_worker(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in cmd and b"resource_tracker" not in cmd


def soak(root: Path, out: Path, kills: int, seed: int = 0, kill_after_s: float = 25.0) -> dict:
    """Scan with SIGKILLs of the whole scan and of one worker, a file truncated mid-scan, and resumes."""
    rng = random.Random(seed)
    events, kept = [], []
    t0 = time.perf_counter()
    runs = 0
    truncated = False
    while True:
        p = _cli(root, out, ["--resume"] if runs else [])
        runs += 1
        if runs <= kills:
            deadline = time.perf_counter() + kill_after_s * (0.6 + 0.8 * rng.random())
            worker_killed = False
            while time.perf_counter() < deadline and p.poll() is None:
                time.sleep(0.5)
                if not worker_killed and runs == 1 and time.perf_counter() > deadline - kill_after_s / 3:
                    workers = [c for c in _children(p.pid) if _is_worker(c)]
                    if workers:
                        os.kill(workers[0], signal.SIGKILL)
                        events.append({"run": runs, "fault": "worker killed mid-model", "pid": workers[0]})
                        worker_killed = True
                if not truncated and runs == 2:
                    victim = root / "models" / "unique-000.safetensors"
                    with open(victim, "r+b") as f:
                        f.truncate(os.path.getsize(victim) // 3)
                    events.append({"run": runs, "fault": "model file truncated mid-scan", "file": str(victim)})
                    truncated = True
            if p.poll() is None:
                before, _ = _records(out)
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                events.append({"run": runs, "fault": "scan killed (SIGKILL)", "records_before": len(before)})
                kept.append((out / "results.jsonl").read_bytes() if (out / "results.jsonl").exists() else b"")
                continue
        err = p.communicate()[1].decode(errors="replace")
        events.append({"run": runs, "exit": p.returncode, "stderr": err.strip().splitlines()[-1:] if err else []})
        break
    return {"seconds": time.perf_counter() - t0, "runs": runs, "events": events, "kept": kept}


def budget_phase(tmp: Path) -> dict:
    """A model that cannot finish inside its budget: a timeout record, and the scan goes on."""
    hub = tmp / "budget-hub"
    hub.mkdir()
    from eebguard.paths import data_path

    shutil.copy(data_path("examples", "models", "seven-none-s0-uce.safetensors"), hub / "slow.safetensors")
    (hub / "broken.safetensors").write_bytes(b"garbage")
    out = tmp / "budget-out"
    p = _cli(hub, out, ["--budget-s", "3"], workers=1)
    p.wait()
    rows, bad = _records(out)
    return {"exit": p.returncode, "records": len(rows), "corrupt": bad,
            "timed_out": sum("timed out" in (r.get("reason") or "") for r in rows)}


def full_disk_phase(tmp: Path) -> dict:
    """An output folder that fills up (a 64 KiB tmpfs): the scan fails with a one-line error, nothing
    written is corrupt, and a resume in a roomier folder completes."""
    mnt = tmp / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        return {"skipped": "cannot mount a size-limited tmpfs here (needs root)"}
    try:
        hub = tmp / "disk-hub"
        hub.mkdir()
        for i in range(40):
            (hub / f"b{i:03d}.safetensors").write_bytes(b"garbage" * 10)
        (mnt / "filler").write_bytes(b"\0" * (60 * 1024))
        p = _cli(hub, mnt / "o", workers=1)
        p.wait()
        err = p.stderr.read().decode(errors="replace").strip().splitlines()
        rows, bad = _records(mnt / "o")
        (mnt / "filler").unlink()
        p2 = _cli(hub, mnt / "o", ["--resume"], workers=1)
        p2.wait()
        rows2, bad2 = _records(mnt / "o")
        return {"first_exit": p.returncode, "first_error": err[-1:] if err else [], "records_when_full": len(rows),
                "corrupt_when_full": bad, "resumed_exit": p2.returncode, "records_after_resume": len(rows2),
                "corrupt_after_resume": bad2, "entries": 40}
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def check(root: Path, out: Path, run: dict) -> dict:
    from eebguard.hubscan import discover

    rows, bad = _records(out)
    expected = {t.rel for t in discover(root)}
    sources = [r.get("source") for r in rows]
    summary = json.loads((out / "summary.json").read_text())
    final = (out / "results.jsonl").read_bytes()
    prefix_kept = all(final.startswith(b"".join(line + b"\n" for line in k.split(b"\n")[:-1] if line.strip()))
                      for k in run["kept"] if b"\n" in k)
    return {
        "entries": len(expected), "records": len(rows),
        "lost": len(expected - set(sources)), "duplicated": len(sources) - len(set(sources)),
        "unexpected": len(set(sources) - expected), "corrupt": bad,
        "summary_counts_match": summary["scanned"] + len(summary["errors"]) + len(summary["skipped"]) == len(rows),
        "finished_records_kept": prefix_kept,
        "by_status": {s: sum(r.get("status") == s for r in rows) for s in ("ok", "error", "skipped")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--unique", type=int, default=6, help="distinct models (the rest are copies and links)")
    ap.add_argument("--kills", type=int, default=3, help="SIGKILLs of the whole scan before it may finish")
    ap.add_argument("--kill-after-s", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=str(RESULTS_DIR / "hub_soak.json"))
    ap.add_argument("--keep", default=None, help="build the hub and outputs here (default: a temporary folder)")
    ap.add_argument("--profile", default="fast", choices=("fast", "smoke"), help="scan budgets of every scan-hub run")
    a = ap.parse_args()
    global PROFILE
    PROFILE = a.profile
    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="eebguard-soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    root, out = tmp / "hub", tmp / "out"
    built = build_hub(root, a.entries, a.unique, a.seed)
    run = soak(root, out, a.kills, a.seed, a.kill_after_s)
    inv = check(root, out, run)
    res = {
        "command": "python benchmarks/bench_hub_soak.py " + " ".join(sys.argv[1:]), "profile": PROFILE,
        "hub": built["counts"], "invariants": inv,
        "pickle_executed": os.path.exists(built["marker"]),
        "seconds": round(run["seconds"], 1), "runs": run["runs"],
        "entries_per_min": round(inv["records"] / run["seconds"] * 60, 1),
        # the largest resident set of any process of the scans (scan-hub and its workers)
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "faults": run["events"],
        "budget": budget_phase(tmp),
        "full_disk": full_disk_phase(tmp),
        "cpus": os.cpu_count(),
    }
    disk = res["full_disk"]
    ok = (inv["lost"] == inv["duplicated"] == inv["corrupt"] == inv["unexpected"] == 0 and inv["summary_counts_match"]
          and inv["finished_records_kept"] and not res["pickle_executed"] and res["budget"]["corrupt"] == 0
          and ("skipped" in disk or (disk["corrupt_when_full"] == disk["corrupt_after_resume"] == 0
                                     and disk["records_after_resume"] == disk["entries"])))
    res["invariants_hold"] = ok
    print(f"| entries | records | lost | duplicated | corrupt | summary = records | finished kept | runs | "
          f"entries/min | peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|\n"
          f"| {inv['entries']} | {inv['records']} | {inv['lost']} | {inv['duplicated']} | {inv['corrupt']} | "
          f"{inv['summary_counts_match']} | {inv['finished_records_kept']} | {run['runs']} | {res['entries_per_min']} | "
          f"{res['peak_rss_mb']} |")
    shown = [e.get("fault") or f"exit {e.get('exit')}" for e in run["events"]]
    print(f"faults: {shown}")
    print(f"budget phase: {res['budget']}; full disk: {res['full_disk']}")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2))
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
