"""Scanner plugins (one module each, found by ``SCANNERS``), the feature schema they declare, and the
runner that chains them into a Features record."""
from __future__ import annotations

from eebguard.scanners.base import SCANNERS, Scanner, ScannerResult, feature_names, feature_spec, feature_specs
from eebguard.scanners.context import ScanContext
from eebguard.scanners.settings import ScanSettings
from eebguard.scanners.runner import run_scanners

__all__ = ["SCANNERS", "Scanner", "ScannerResult", "ScanContext", "ScanSettings", "feature_names", "feature_spec",
           "feature_specs", "run_scanners"]
