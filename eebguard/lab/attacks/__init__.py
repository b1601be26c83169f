"""EEB attack plugins, one module per depth, found by ``ATTACKS``."""
from eebguard.lab.attacks.base import ATTACKS, Attack, get_attack

__all__ = ["ATTACKS", "Attack", "get_attack"]
