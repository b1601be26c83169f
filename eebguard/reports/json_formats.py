"""The records as JSON (one object, or a list for several models) and as JSON lines."""
from __future__ import annotations

import json

from eebguard.reports.base import FORMATS, ReportFormat


def as_json(records: list[dict]) -> str:
    return json.dumps(records[0] if len(records) == 1 else records, indent=2)


def as_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@FORMATS.register
class JsonFormat(ReportFormat):
    """The record (a list of records for several models), indented JSON."""

    name, extension, order = "json", "json", 1

    def render(self, records: list[dict]) -> str:
        return as_json(records)


@FORMATS.register
class JsonLinesFormat(ReportFormat):
    """One record per line."""

    name, extension, order = "jsonl", "jsonl", 2

    def render(self, records: list[dict]) -> str:
        return as_jsonl(records)
