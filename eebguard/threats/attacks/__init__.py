"""EEB attack plugins, one module per depth."""
from eebguard.threats.attacks import data, deep, shallow, surface  # noqa: F401
from eebguard.threats.attacks.base import ATTACKS, Attack, get_attack

__all__ = ["ATTACKS", "Attack", "get_attack"]
