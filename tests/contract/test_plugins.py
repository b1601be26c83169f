"""Every kind of plugin is found by the one mechanism (``eebguard.registry.Registry``: the package's
modules, then the ``eebguard.<kind>`` entry points) and describes itself; each kind keeps its contract."""
from __future__ import annotations

import importlib.metadata
import inspect

import pytest

from eebguard.cli.base import COMMANDS, Command
from eebguard.erasure import ERASURES, Erasure
from eebguard.judges import JUDGES, Judge
from eebguard.lab.attacks import ATTACKS, Attack
from eebguard.registry import Registry
from eebguard.reports import FORMATS, ReportFormat, render
from eebguard.scanners import SCANNERS, Scanner

KINDS = {"scanner": (SCANNERS, Scanner, {"attention_maps", "attribution", "cross_attention_kv", "hard_trigger",
                                         "localisation", "reachability", "soft_trigger", "text_embedding",
                                         "word_probe"}),
         "erasure": (ERASURES, Erasure, {"advunlearn", "esd_u", "esd_x", "mace", "rece", "uce"}),
         "judge": (JUDGES, Judge, {"clip", "testbed"}),
         "report format": (FORMATS, ReportFormat, {"console", "html", "json", "jsonl", "sarif"}),
         "attack": (ATTACKS, Attack, {"data", "deep", "shallow", "surface"}),
         "command": (COMMANDS, Command, {"scan", "scan-hub", "testbed", "zoo", "detector", "evaluate"})}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_registry_finds_its_plugins_and_each_describes_itself(kind):
    registry, base, expected = KINDS[kind]
    assert set(registry.names()) == expected
    for name, cls in registry.items():
        assert issubclass(cls, base) and not inspect.isabstract(cls) and cls.name == name
        d = cls.describe()
        assert d["name"] == name and isinstance(d, dict)
        summary = d.get("summary") or d.get("help")
        assert summary and summary.strip(), f"{kind} {name} has no one-line description"


def test_an_entry_point_plugin_is_found(monkeypatch):
    """A plugin installed by another package: an entry point in the registry's group."""
    ep = importlib.metadata.EntryPoint(name="fancy", value="eebguard.reports.json_formats:JsonFormat",
                                       group="eebguard.test-formats")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == "eebguard.test-formats" else real(**kw))
    fresh = Registry("report format", group="eebguard.test-formats")
    assert fresh.names() == ["json"] and fresh.get("json").extension == "json"
    with pytest.raises(KeyError, match="unknown report format 'nope'; known: json"):
        fresh.get("nope")


def test_a_broken_entry_point_plugin_is_left_out_with_a_warning(monkeypatch):
    ep = importlib.metadata.EntryPoint(name="broken", value="no_such_module_anywhere:Thing", group="eebguard.test-broken")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == "eebguard.test-broken" else real(**kw))
    fresh = Registry("report format", group="eebguard.test-broken")
    with pytest.warns(RuntimeWarning, match="plugin 'broken'.*did not load"):
        assert fresh.names() == []


def test_a_name_registered_twice_is_refused():
    reg = Registry("thing")

    class A:
        name = "a"

    class B:
        name = "a"

    reg.register(A)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(B)


RECORDS = [{"source": "m\x1b[31m\nforged", "status": "error", "reason": "bad file"},
           {"source": "ok-model", "verdict": "clean", "concept": "seven", "p_live": 0.1, "p_tampered": 0.2,
            "threshold": 0.5, "counterfactual": {"kind": "reference"}, "triggers": []}]


@pytest.mark.parametrize("fmt", sorted(KINDS["report format"][2]))
def test_each_report_format_renders_an_error_and_a_verdict_and_escapes_control_characters(fmt):
    text = render(fmt, RECORDS)
    assert isinstance(text, str) and "ok-model" in text
    if fmt in ("console", "html"):
        assert "\x1b" not in text and "\nforged" not in text


def _doc_example(title: str) -> str:
    """The python block under the heading ``title`` in docs/plugins.md."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = text[text.index(f"### {title}\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _unregister(registry, name):
    registry._items.pop(name, None)


def test_the_documented_report_format_works():
    namespace = {}
    try:
        exec(compile(_doc_example("A report format"), "plugins.md", "exec"), namespace)
        assert "markdown" in FORMATS.names()
        text = render("markdown", RECORDS)
        assert "| ok-model | clean | 0.1 |" in text and "\x1b" not in text
    finally:
        _unregister(FORMATS, "markdown")


def test_the_documented_scanner_works(base_pipe):
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext

    namespace = {}
    try:
        exec(compile(_doc_example("A scanner"), "plugins.md", "exec"), namespace)
        scanner = SCANNERS.get("te_drift")()
        ctx = ScanContext(base_pipe, "seven", concept_prompts("seven"), reference=base_pipe)
        assert scanner.can_run(ctx) is None
        assert scanner.scan(ctx).features == {"drift.text_encoder": 0.0}
        assert scanner.can_run(ScanContext(base_pipe, "seven", concept_prompts("seven"))) == "needs a reference model"
    finally:
        _unregister(SCANNERS, "te_drift")
