"""Scanner plugins: each looks at a suspect model for a named concept (optionally beside a reference
model) and returns named, scale-free features plus human-readable evidence.

Scanners run in ``order``; later ones read what earlier ones left in the context (vocabulary
candidates, recovered triggers). A scanner whose needs are unmet (no reference, no judge) returns no
features rather than zeros.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from eebguard.features import FeatureSpec
from eebguard.registry import Plugin, Registry
from eebguard.scanners.context import ScanContext

SCANNERS: Registry["Scanner"] = Registry("scanner", package="eebguard.scanners")


@dataclass
class ScannerResult:
    features: dict[str, float] = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)
    skipped: str | None = None  # why nothing was computed


class Scanner(Plugin, ABC):
    described = ("order", "needs_reference", "needs_judge", "needs_trigger", "conditions_unet")
    order: int = 0
    needs_reference: bool = False  # True: nothing at all without a reference
    needs_judge: bool = False
    needs_trigger: bool = False  # True: runs on the trigger a discrete search recovered before it
    conditions_unet: bool = True  # False: reads the text encoder only (runs on U-Nets the scan cannot condition)
    features: tuple[FeatureSpec, ...] = ()

    def can_run(self, ctx: ScanContext) -> str | None:
        """None when the scanner can run, else the reason it cannot."""
        if self.conditions_unet and ctx.unsupported_unet:
            return ctx.unsupported_unet
        if self.needs_reference and ctx.reference is None:
            return "needs a reference model"
        if self.needs_judge and ctx.judge is None:
            return "needs a concept judge"
        if self.needs_trigger and not ctx.cache.get("triggers"):
            return "no recovered trigger"
        return None

    @abstractmethod
    def scan(self, ctx: ScanContext) -> ScannerResult:
        ...

    @classmethod
    def describe(cls) -> dict:
        return {**super().describe(), "features": [f.name for f in cls.features]}


def F(name: str, scanner: str, needs_reference: bool, description: str, needs_judge: bool = False,
      reference_free_only: bool = False) -> FeatureSpec:
    return FeatureSpec(name, scanner, needs_reference, description, needs_judge, reference_free_only)


def feature_specs() -> dict[str, FeatureSpec]:
    """The feature schema: every feature the registered scanners declare, by name."""
    specs: dict[str, FeatureSpec] = {}
    for _, cls in SCANNERS.items():
        for s in cls.features:
            if s.name in specs and specs[s.name] != s:
                raise ValueError(f"feature {s.name!r} declared twice differently")
            specs[s.name] = s
    return specs


def feature_names() -> list[str]:
    """The schema's feature names, in a fixed order."""
    return sorted(feature_specs())


def feature_spec(name: str) -> FeatureSpec:
    return feature_specs()[name]
