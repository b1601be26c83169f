"""eebguard: scan concept-erased text-to-image models for Erasure Evasion Backdoors."""
__version__ = "0.1.0"


def scan(model, concept: str, reference="testbed", **kwargs):
    """Scan one model; see :func:`eebguard.api.scan`."""
    from eebguard.api import scan as _scan

    return _scan(model, concept, reference=reference, **kwargs)


def __getattr__(name):  # lazy: importing eebguard must not import torch
    if name in ("Scanner", "ScanResult"):
        from eebguard import api

        return getattr(api, name)
    raise AttributeError(name)
