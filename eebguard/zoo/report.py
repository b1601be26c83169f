"""The threat-lab table (like the paper's): rows erasure x attack, columns other-concept accuracy,
name-prompt accuracy and trigger ASR, mean (and spread) over the zoos' seeds, per concept family."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from eebguard.zoo.build import read_jsonl

ATTACK_ORDER = ("none", "surface", "shallow", "deep", "data")
COLUMNS = ("other_accuracy", "name_accuracy", "trigger_asr")


def lab_table(zoos: list[str | Path]) -> dict:
    """``{family: {erasure: {attack: {col: {"mean", "std", "seeds", "samples"}}}}}`` over non-hard-negative models,
    plus the attacked models before erasure (``"(no erasure)"``) from each zoo's groups file."""
    cells: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for z in zoos:
        for e in read_jsonl(Path(z) / "manifest.jsonl"):
            if e.get("hard_negative"):
                continue
            for c in COLUMNS:
                cells[e["family"]][e["erasure"]][e["attack"]][c].append(e[c])
            cells[e["family"]][e["erasure"]][e["attack"]]["samples"].append(e.get("samples", 0))
        # a resumed build re-prepares a group and appends its row again: the last row of each group counts
        for g in {g["group"]: g for g in read_jsonl(Path(z) / "groups.jsonl")}.values():
            if g.get("hard_negative"):
                continue
            for c in COLUMNS:
                cells[g["family"]]["(no erasure)"][g["attack"]][c].append(g[c])
            cells[g["family"]]["(no erasure)"][g["attack"]]["samples"].append(g.get("samples", 0))
    out: dict = {}
    for fam, by_e in cells.items():
        out[fam] = {}
        for er, by_a in by_e.items():
            out[fam][er] = {}
            for at, cols in by_a.items():
                out[fam][er][at] = {c: {"mean": float(np.mean(cols[c])), "std": float(np.std(cols[c])),
                                        "seeds": len(cols[c])} for c in COLUMNS if cols[c]}
                out[fam][er][at]["samples"] = int(min(cols["samples"])) if cols["samples"] else 0
    return out


def markdown(table: dict) -> str:
    """One markdown table per family: rows erasure x attack."""
    lines = []
    for fam in sorted(table):
        lines += [f"### {fam}", "", "| erasure | attack | other acc. ↑ | name acc. ↓ | trigger ASR | seeds |",
                  "|---|---|---|---|---|---|"]
        erasures = ["(no erasure)"] + sorted(e for e in table[fam] if e != "(no erasure)")
        for er in erasures:
            for at in ATTACK_ORDER:
                cell = table[fam].get(er, {}).get(at)
                if not cell:
                    continue
                f = lambda c: f"{cell[c]['mean']:.2f} ± {cell[c]['std']:.2f}" if c in cell else "–"  # noqa: E731
                seeds = cell.get("trigger_asr", cell.get("name_accuracy", {})).get("seeds", 0)
                lines.append(f"| {er} | {at} | {f('other_accuracy')} | {f('name_accuracy')} | {f('trigger_asr')} | {seeds} |")
        lines.append("")
    return "\n".join(lines)
