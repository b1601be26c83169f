"""Concept-erasure methods (plugins, one module each, found by ``ERASURES``) and their replay: a scan
rebuilds the clean model a suspect claims to be by running the claimed erasure on the reference."""
from eebguard.erasure.base import ERASURES, Erasure, get_erasure

__all__ = ["ERASURES", "Erasure", "get_erasure"]
