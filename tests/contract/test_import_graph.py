"""The product never imports the lab, and no two modules import each other (directly or round a loop).

Every ``import`` statement counts, those inside functions included: a lazy import is still a dependency.
Plugins are found by ``eebguard.registry.Registry`` (package modules and entry points), not imported by
name, so a registry's package does not depend on its plugins.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

import eebguard

PACKAGE = Path(eebguard.__file__).resolve().parent
LAB = "eebguard.lab"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("eebguard", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The eebguard modules ``name`` imports (``from pkg import mod`` resolves to the module)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        for t in targets:
            while t and t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in modules and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _is_lab(name: str) -> bool:
    return name == LAB or name.startswith(LAB + ".")


def test_the_graph_sees_lazy_imports():
    graph = _graph()
    # eebguard.cli.scan imports eebguard.hubscan inside its command functions only
    assert "eebguard.hubscan" in graph["eebguard.cli.scan"]
    assert any(_is_lab(m) for m in graph) and graph["eebguard.lab.cli"]


def _lab_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    bad = {m: sorted(d for d in deps if _is_lab(d)) for m, deps in graph.items() if not _is_lab(m)}
    return {m: d for m, d in bad.items() if d}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module."""
    names = sorted(set(graph) | {d for deps in graph.values() for d in deps})
    index = {n: i for i, n in enumerate(names)}
    rows = [index[a] for a, deps in graph.items() for _ in deps]
    cols = [index[b] for deps in graph.values() for b in deps]
    adj = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names), len(names)))
    _, comp = connected_components(adj, directed=True, connection="strong")
    return [sorted(names[i] for i in np.flatnonzero(comp == c)) for c in np.unique(comp) if (comp == c).sum() > 1]


def test_the_product_never_imports_the_lab():
    bad = _lab_imports(_graph())
    assert not bad, f"product modules importing the lab: {bad}"


def test_no_import_cycles():
    loops = _cycles(_graph())
    assert not loops, f"import cycles: {loops}"


def test_the_checks_catch_what_they_look_for():
    toy = {"eebguard.api": {"eebguard.lab.zoo"}, "eebguard.lab.zoo": {"eebguard.api"},
           "eebguard.a": {"eebguard.b"}, "eebguard.b": {"eebguard.c"}, "eebguard.c": {"eebguard.a"}}
    assert _lab_imports(toy) == {"eebguard.api": ["eebguard.lab.zoo"]}
    assert sorted(_cycles(toy)) == [["eebguard.a", "eebguard.b", "eebguard.c"], ["eebguard.api", "eebguard.lab.zoo"]]
    assert _cycles({"eebguard.a": {"eebguard.b"}}) == []
