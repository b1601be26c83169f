"""The user docs stay true to the code and readable: every CLI option is in the reference, every
registered plugin in the catalogue, every relative link resolves (file and anchor), and dated
experiment sections live under docs/research/ only."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
USER_PAGES = sorted(p for p in DOCS.glob("*.md"))
ALL_PAGES = [ROOT / "README.md", *USER_PAGES, *sorted((DOCS / "research").glob("*.md")),
             ROOT / "benchmarks" / "README.md", ROOT / "experiments" / "README.md", ROOT / "tests" / "README.md"]
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    out, seen, fence = set(), {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        if fence or not line.startswith("#"):
            continue
        s = slug(line.lstrip("#"))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def links(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:", target):
            yield target


def test_slug_matches_github():
    assert slug("Finding the base (`--reference auto`)") == "finding-the-base---reference-auto"
    assert slug("How a scan decides") == "how-a-scan-decides"


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda p: p.name)
def test_user_pages_hold_no_dated_experiment_sections(page):
    # a shell comment inside a code block is not a heading
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    dated = [line for line in text.splitlines() if line.startswith("#") and (DATE.search(line) or "superseded" in line.lower())]
    assert not dated, f"{page.name}: dated sections belong in docs/research/: {dated}"


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield path, action.option_strings[-1]


def test_every_cli_option_is_in_the_reference():
    from eebguard.cli import build_parser

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    sections = {m.group(1): m.start() for m in re.finditer(r"^#+ `eebguard ([a-z -]+)`", text, re.M)}
    missing = []
    for path, option in _options(build_parser()):
        if not path:  # eebguard --version
            continue
        start = sections.get(" ".join(path))
        end = min([s for s in sections.values() if start is not None and s > start] or [len(text)])
        if start is None or f"`{option}`" not in text[start:end]:
            missing.append(f"eebguard {' '.join(path)} {option}")
    assert not missing, f"docs/cli.md lacks {missing}"


def test_every_plugin_is_in_the_catalogue():
    from eebguard.cli.base import COMMANDS
    from eebguard.erasure import ERASURES
    from eebguard.judges import JUDGES
    from eebguard.lab.attacks import ATTACKS
    from eebguard.reports import FORMATS
    from eebguard.scanners import SCANNERS

    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    missing = [f"{reg.kind} {n}" for reg in (SCANNERS, ERASURES, JUDGES, FORMATS, ATTACKS, COMMANDS)
               for n in reg.names() if f"`{n}`" not in text]
    assert not missing, f"docs/plugins.md lacks {missing}"
