"""Where shipped data lives: the repository's top-level ``data/`` (installed as ``eebguard.data``)."""
from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    override = os.environ.get("EEBGUARD_DATA")
    if override:
        return Path(override)
    import importlib.util

    spec = importlib.util.find_spec("eebguard.data")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parent.parent / "data"


def data_path(*parts: str) -> Path:
    return data_root().joinpath(*parts)
