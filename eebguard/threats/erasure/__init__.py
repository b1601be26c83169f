"""Concept-erasure plugins, one module per method."""
from eebguard.threats.erasure import advunlearn, esd, mace, rece, uce  # noqa: F401
from eebguard.threats.erasure.base import ERASURES, Erasure, get_erasure

__all__ = ["ERASURES", "Erasure", "get_erasure"]
