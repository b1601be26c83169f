"""Shared helpers for benchmark scripts: a results folder, JSON output and a printed table."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def write(name: str, payload: dict, path: str | Path | None = None) -> Path:
    """``payload`` with the benchmark's name and the machine, to ``path`` (default ``results/NAME.json``)."""
    path = Path(path) if path else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=float) + "\n")
    return path


def table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


#: how a zoo model relates to its label, for per-kind summaries of the detector's hard cases
MODEL_KINDS = ("clean backdoor", "leaky survivor", "planted, destroyed", "clean erasure", "hard negative")


def model_kind(entry: dict) -> str:
    """A surviving backdoor with the name erased (<= 0.15) or kept, a planted backdoor the erasure
    destroyed, a clean erasure, or a hard negative (from a zoo manifest entry or evaluation row)."""
    if entry["label"]:
        return "clean backdoor" if entry["name_accuracy"] <= 0.15 else "leaky survivor"
    if entry.get("planted"):
        return "planted, destroyed"
    return "hard negative" if entry.get("hard_negative") else "clean erasure"


def zoo_entries(zoo: str | Path, ids: str | None = None) -> list[dict]:
    """A built zoo's manifest entries (a rebuilt model's last row wins): those named by ``ids``
    (comma-separated), else every surviving backdoor (planted, label 1)."""
    from eebguard.models.manifest import load_manifest

    entries = list({e["id"]: e for e in load_manifest(Path(zoo) / "manifest.jsonl")}.values())
    if ids:
        wanted = set(ids.split(","))
        return [e for e in entries if e["id"] in wanted]
    return [e for e in entries if e.get("planted") and e.get("label") == 1]
