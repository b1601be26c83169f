"""Concept judges (plugins): images -> per-concept probabilities. Found by ``JUDGES`` (one module each)."""
from eebguard.judges.base import JUDGES, Judge, get_judge

__all__ = ["JUDGES", "Judge", "get_judge"]
