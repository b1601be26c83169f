"""The feature record: every number a scanner reports (declared by the scanners as ``FeatureSpec``s;
``eebguard.scanners.feature_names()`` lists the schema), with its meaning and whether it needs a
reference model. Versioned: a detector fitted on one schema version refuses another, unless every
feature it reads means the same in both (``readable``).

Features are scale-free by construction (ratios, cosines, robust z-scores, or fractions, each against
the same model's own controls), so a detector fitted on testbed zoos can transfer to SD-sized models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# 5: the screens and the trigger search measured against the counterfactual (contrastive); replay.* gone
# (the demonstration replaced it). One schema at a time: records of another version are rescanned.
SCHEMA_VERSION = "5"


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    scanner: str
    needs_reference: bool
    description: str
    needs_judge: bool = False
    # computed only by scans *without* a reference: a reference scanner's fallback mode
    reference_free_only: bool = False


def readable(version, names=()) -> bool:
    """Whether records (or a detector) of schema ``version`` can be read: the current version only."""
    return str(version) == SCHEMA_VERSION


@dataclass
class Features:
    """One scan's output: ``values`` (feature name -> float; a feature that could not be computed is
    absent, never zero) plus ``evidence`` (triggers, top tokens, per-layer scores, small maps)."""

    values: dict[str, float] = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    def vector(self, names: list[str]) -> list[float]:
        """Values in the order of ``names`` (e.g. ``eebguard.scanners.feature_names()``); missing features
        as NaN (the detector imputes them)."""
        return [float(self.values.get(n, math.nan)) for n in names]

    def to_json(self) -> dict:
        return {"schema_version": self.schema_version, "values": {k: float(v) for k, v in sorted(self.values.items())},
                "evidence": self.evidence}

    @classmethod
    def from_json(cls, obj: dict) -> "Features":
        if not readable(obj.get("schema_version"), obj.get("values", {})):
            raise ValueError(f"features of schema version {obj.get('schema_version')!r}; this eebguard reads {SCHEMA_VERSION}")
        # an earlier readable record keeps its version: writing it back must not relabel it as current
        return cls(values={k: float(v) for k, v in obj.get("values", {}).items()}, evidence=obj.get("evidence", {}),
                   schema_version=str(obj["schema_version"]))
