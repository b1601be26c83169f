"""Report formats (plugins, one module each, found by ``FORMATS``). Each renders result records
(``ScanResult.to_json()`` dicts, or a hub scan's error/skip records) to text, so a report can be rebuilt
later from a hub scan's ``results.jsonl`` without rescanning."""
from __future__ import annotations

import sys
from pathlib import Path

from eebguard.registry import Plugin, Registry


class ReportFormat(Plugin):
    """``render(records) -> str``; ``extension`` names the file ``eebguard.<extension>`` in an output folder."""

    described = ("extension",)
    extension: str = ""
    order: int = 100  # where the format sits in lists and messages

    def render(self, records: list[dict]) -> str:
        raise NotImplementedError


FORMATS: Registry[ReportFormat] = Registry("report format", package="eebguard.reports")


def format_names() -> list[str]:
    return [n for n, _ in sorted(FORMATS.items(), key=lambda kv: (kv[1].order, kv[0]))]


def render(fmt: str, records: list[dict]) -> str:
    """``records`` rendered in format ``fmt`` (``console``, ``json``, ``jsonl``, ``html``, ``sarif``, or a plugin's)."""
    return FORMATS.get(fmt)().render(records)


def write_reports(records: list[dict], fmts: list[str], output: str | None = None, quiet: bool = False) -> list[str]:
    """Render ``records`` in each of ``fmts`` and write them: to stdout without ``output``, to the file
    ``output`` for one format, else to ``output/eebguard.<extension>`` each. Each format is rendered and
    written on its own (a failing one never loses the others, and says so on stderr); the JSON formats
    first. With ``output`` the console summary is also printed unless ``quiet``. Returns the formats
    that failed."""
    from eebguard.records import write_text

    failed = []
    o = Path(output) if output else None
    order = sorted(fmts, key=lambda f: f not in ("jsonl", "json"))
    for f in order:
        try:
            text = render(f, records)
            text += "" if text.endswith("\n") else "\n"
            if o is None:
                if not (quiet and f == "console"):
                    sys.stdout.write(text)
                continue
            if len(fmts) == 1 and not o.is_dir():
                o.parent.mkdir(parents=True, exist_ok=True)
                write_text(o, text)
            else:
                o.mkdir(parents=True, exist_ok=True)
                write_text(o / f"eebguard.{FORMATS.get(f).extension}", text)
        except Exception as exc:  # noqa: BLE001 - one renderer's bug must not lose the scan
            failed.append(f)
            print(f"eebguard: error: the {f} output failed ({type(exc).__name__}: {str(exc)[:200]})", file=sys.stderr)
    if o is not None and not quiet and "console" not in fmts:
        try:
            print(render("console", records))
        except Exception as exc:  # noqa: BLE001
            print(f"eebguard: error: the console summary failed ({type(exc).__name__})", file=sys.stderr)
    return failed
