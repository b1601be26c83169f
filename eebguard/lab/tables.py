"""What benchmark and experiment scripts share: JSON results beside the script (``results/NAME.json``, with
the machine), a printed table, and zoo-entry selection."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path


def results_dir() -> Path:
    """``results/`` beside the running script (``benchmarks/results``, ``experiments/results``)."""
    script = Path(sys.argv[0])
    return (script.resolve().parent if script.suffix == ".py" else Path.cwd()) / "results"


def machine() -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def write(name: str, payload: dict, path: str | Path | None = None) -> Path:
    """``payload`` with the benchmark's name and the machine, to ``path`` (default ``results/NAME.json`` beside the script)."""
    path = Path(path) if path else results_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=float) + "\n")
    return path


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table's lines: the header, the separator, one line per row (cells as ``str``)."""
    def line(cells):
        return "| " + " | ".join(str(c) for c in cells) + " |"
    return [line(header), "|" + "---|" * len(header)] + [line(r) for r in rows]


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
