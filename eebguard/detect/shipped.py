"""The shipped detectors and which one scores a scan: the richest whose scanners all ran in it.

``SHIPPED_DETECTORS`` (richest first): ``replay`` (the whole schema), ``reference`` (all but the claimed
erasure's replay), ``default`` (reachability features that need no reference). A scan that lacks a
scanner's output altogether (no reference, no claimed erasure, a scanner that failed) falls to the next
one, so what the scan did not run is never imputed; a feature one scanner could not compute this time is.
"""
from __future__ import annotations

from collections.abc import Iterable

from eebguard.detect.estimator import SHIPPED_DETECTORS


def scanners_of(names: Iterable[str]) -> set[tuple[str, bool]]:
    """The scanners that compute these features, each with its mode (True: the mode of scans without a
    reference, as the soft-trigger search's judge-driven one); names outside the schema are ignored."""
    from eebguard.features import feature_names, feature_spec

    schema = set(feature_names())
    return {(feature_spec(n).scanner, feature_spec(n).reference_free_only) for n in names if n in schema}


def has_inputs(detector, values: Iterable[str]) -> bool:
    """Did every scanner this detector reads run in the scan that produced ``values``?"""
    return scanners_of(detector.feature_names_) <= scanners_of(values)


def load_shipped(names: Iterable[str] = SHIPPED_DETECTORS) -> dict:
    """The shipped detectors of ``names`` present in this installation, richest first (name -> detector)."""
    from eebguard.detect.persist import load_detector
    from eebguard.paths import data_path

    out = {}
    for name in names:
        path = data_path("detector", name)
        if path.with_suffix(".json").is_file():
            out[name] = load_detector(path)
    return out


def pick(detectors: dict, scans: Iterable[Iterable[str]]) -> tuple[str, object] | None:
    """The first of ``detectors`` (richest first) whose inputs every scan has; else the last one (which
    may be None: no detector)."""
    scans = [set(v) for v in scans]
    for name, det in detectors.items():
        if det is not None and all(has_inputs(det, v) for v in scans):
            return name, det
    return next(reversed(detectors.items()), None)
