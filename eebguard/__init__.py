"""eebguard: scan concept-erased text-to-image models for Erasure Evasion Backdoors."""
__version__ = "0.1.0"
