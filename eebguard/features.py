"""The feature schema: every number a scanner reports, with its meaning and whether it needs a
reference model. Versioned: a detector fitted on one schema version refuses another, unless every
feature it reads means the same in both (``readable``).

Features are scale-free by construction (ratios, cosines, robust z-scores, or fractions, each against
the same model's own controls), so a detector fitted on testbed zoos can transfer to SD-sized models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

SCHEMA_VERSION = "4"  # 2: word_probe features (probe.*) joined; 3: the claimed erasure's replay (replay.*);
# 4: the soft-trigger search's judge-driven mode in scans without a reference (soft.judge_*)
#: features each version added to an otherwise unchanged schema: a consumer that reads none of a later
#: version's additions reads the earlier version's records and detectors as they are
ADDED_IN = {"4": ("soft.judge_reach", "soft.judge_early_reach", "soft.judge_start")}


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    scanner: str
    needs_reference: bool
    description: str
    needs_judge: bool = False
    # computed only by scans *without* a reference: a reference scanner's fallback mode
    reference_free_only: bool = False


_SPECS: dict[str, FeatureSpec] = {}


def register_features(*specs: FeatureSpec) -> None:
    for s in specs:
        if s.name in _SPECS and _SPECS[s.name] != s:
            raise ValueError(f"feature {s.name!r} declared twice differently")
        _SPECS[s.name] = s


def feature_names() -> list[str]:
    """The schema's feature names, in a fixed order."""
    import eebguard.scanners  # noqa: F401  (scanners declare their features)

    return sorted(_SPECS)


def feature_spec(name: str) -> FeatureSpec:
    import eebguard.scanners  # noqa: F401

    return _SPECS[name]


def readable(version, names) -> bool:
    """Whether records (or a detector) of schema ``version`` can be read for the features ``names``:
    the current version, or an earlier one that ``ADDED_IN`` says differs only by features not read."""
    version = str(version)
    if version == SCHEMA_VERSION:
        return True
    if not version.isdigit() or int(version) < 3 or int(version) > int(SCHEMA_VERSION):
        return False
    between = [str(v) for v in range(int(version) + 1, int(SCHEMA_VERSION) + 1)]
    if any(v not in ADDED_IN for v in between):  # a change that was not purely additive
        return False
    added = {n for v in between for n in ADDED_IN[v]}
    return not (set(names) & added)


@dataclass
class Features:
    """One scan's output: ``values`` (feature name -> float; a feature that could not be computed is
    absent, never zero) plus ``evidence`` (triggers, top tokens, per-layer scores, small maps)."""

    values: dict[str, float] = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    def vector(self, names: list[str] | None = None) -> list[float]:
        """Values in schema order; missing features as NaN (the detector imputes them)."""
        names = names or feature_names()
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
