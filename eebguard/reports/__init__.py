"""Renderings of scan results: console text, JSON, JSON lines, a self-contained HTML report, SARIF 2.1.0.

Formats are plugins (``FORMATS``; a new one is a module here or an ``eebguard.reports`` entry point).
"""
from eebguard.reports.base import FORMATS, ReportFormat, format_names, render, write_reports
from eebguard.reports.console import console
from eebguard.reports.html_report import html_report
from eebguard.reports.json_formats import as_json, as_jsonl
from eebguard.reports.sarif import sarif

__all__ = ["FORMATS", "ReportFormat", "as_json", "as_jsonl", "console", "format_names", "html_report", "render", "sarif", "write_reports"]
