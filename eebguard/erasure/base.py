"""Concept-erasure methods: each removes a concept *by its name* from a pipeline, in place.

The defender in the EEB threat model runs one of these on a model it received, unaware of any trigger.
Each method is one module and a registered plugin that cites its paper.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from eebguard.probes.templates import ConceptPrompts
from eebguard.registry import Plugin, Registry, checked_hyperparameters
from eebguard.erasure.editing import EditSettings

ERASURES: Registry["Erasure"] = Registry("erasure method", package="eebguard.erasure")


class Erasure(Plugin, ABC):
    described = ("cite", "robust", "defaults", "fit_space")
    cite: str = ""
    robust: bool = False  # adversarially robust (searches for prompts that bring the concept back)
    defaults: dict = {}
    #: hyperparameters a counterfactual may fit to a suspect's weights (name -> (lowest, highest) factor on
    #: the default); only for methods cheap enough to replay a few dozen times (closed forms)
    fit_space: dict = {}

    def __init__(self, **overrides):
        self.hp = checked_hyperparameters(self.name, self.defaults, overrides)

    @abstractmethod
    def erase(self, pipe, concept: ConceptPrompts, settings: EditSettings | None = None) -> dict:
        """Erase ``concept`` from ``pipe``; return a report."""

    def erase_many(self, pipe, concepts: Sequence[ConceptPrompts], settings: EditSettings | None = None) -> dict:
        """Erase several concepts. Methods that erase many at once by design (MACE) override this; the
        default erases one after another and reports the first erasure (plus how many ran)."""
        reports = [self.erase(pipe, c, settings) for c in concepts]
        if not reports:
            raise ValueError(f"{self.name}: nothing to erase")
        return reports[0] if len(reports) == 1 else {**reports[0], "concepts": len(reports)}


def get_erasure(name: str, **overrides) -> Erasure:

    return ERASURES.get(name)(**overrides)
