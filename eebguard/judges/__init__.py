"""Concept judges (plugins): images -> per-concept probabilities."""
from eebguard.judges import clip as _clip  # noqa: F401
from eebguard.judges import testbed as _testbed  # noqa: F401
from eebguard.judges.base import JUDGES, Judge, get_judge

__all__ = ["JUDGES", "Judge", "get_judge"]
