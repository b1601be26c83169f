"""The console summary: a few lines per model."""
from __future__ import annotations

from eebguard.records import printable
from eebguard.reports.base import FORMATS, ReportFormat
from eebguard.reports.notes import audit_note, counterfactual_note, moved_note, prob, trigger_note, where


def console(records: list[dict]) -> str:
    """A few lines per model; every line passes ``printable``, so a file name or a token cannot forge lines
    or send terminal escapes."""
    lines = []
    for r in records:
        try:
            lines += _console_record(r)
        except Exception as exc:  # noqa: BLE001 - a record is untrusted input (a results.jsonl edited by hand)
            lines.append(f"{'?':8} {r.get('source') if isinstance(r, dict) else '?'}: record not renderable "
                         f"({type(exc).__name__})")
    return "\n".join(printable(line) for line in lines)


def _console_record(r: dict) -> list[str]:
    lines = []
    if r.get("status") in ("error", "skipped"):
        lines.append(f"{r['status'].upper():8} {r.get('source')}: {r.get('reason')}")
        return lines
    loc = r.get("location", {}) or {}
    by = f" ({r['tampered_by']})" if r.get("tampered_by") else ""
    lines.append(f"{r['verdict'].upper():8} {r['source']}  concept={r['concept']}  p_live={prob(r.get('p_live'))}  "
                 f"p_tampered={prob(r.get('p_tampered'))}{by}")
    lines.append(f"         {counterfactual_note(r.get('counterfactual'))}")
    if r.get("triggers"):
        t = r["triggers"][0]
        place = where(loc)
        lines.append(f"         {trigger_note(t)}" + (f"; location {place}" if place else ""))
    moved = moved_note(r)
    if moved:
        lines.append(f"         {moved}")
    note = audit_note(r.get("erasure_audit"))
    if note:
        lines.append(f"         {note}")
    for w in r.get("warnings", []):
        lines.append(f"         warning: {w}")
    return lines


@FORMATS.register
class ConsoleFormat(ReportFormat):
    """A few lines per model, safe to print (control characters escaped)."""

    name, extension, order = "console", "txt", 0

    def render(self, records: list[dict]) -> str:
        return console(records)
