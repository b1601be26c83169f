"""Fixtures shared by the suite: the shipped testbed base, loaded once, and its judge; the untrained testbed
and its saved folder (``model_builders``, built once per session) for the model-format tests."""
from __future__ import annotations

import os

import pytest
import torch

# under pytest-xdist each worker process takes a share of the cores (the testbed's tiny ops barely use two)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))

# the lab's fixtures (tiny pipelines, zoos); opt-in for everyone else (`-p eebguard.lab.pytest_plugin`)
pytest_plugins = ["eebguard.lab.pytest_plugin"]


def pytest_collection_modifyitems(config, items):
    """``slow`` tests run when asked for (``-m slow``) or with EEBGUARD_SLOW=1."""
    if os.environ.get("EEBGUARD_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest -m slow` or EEBGUARD_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def base_path():
    from eebguard.paths import data_path

    path = data_path("testbed", "base")
    assert (path / "model_index.json").is_file(), "the shipped testbed base is missing (data/testbed/base)"
    return path


@pytest.fixture(scope="session")
def base_pipe(base_path):
    """The shipped base pipeline (float32). Shared: tests must not modify it (copy first)."""
    from eebguard.models import load

    return load(base_path).pipe


@pytest.fixture(scope="session")
def judge():
    from eebguard.judges import get_judge

    return get_judge("testbed")



@pytest.fixture(scope="module")
def pipe():
    """The untrained testbed pipeline in fp32 (``model_builders.testbed_pipe``). Never mutate it."""
    import model_builders

    return model_builders.testbed_pipe()


@pytest.fixture(scope="module")
def folder():
    """That pipeline saved as a diffusers folder in fp32 (loads back bit-exactly)."""
    import model_builders

    return model_builders.testbed_folder()
