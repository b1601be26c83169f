"""Erasure Evasion Backdoor attacks (Braun, Grebe et al., "Erased but Not Forgotten", arXiv 2504.21072).

An attack binds a secret trigger to a target concept in a model *before* its release; a defender
later erases the concept by name. Each attack family is one module and a registered plugin.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from eebguard.probes.templates import ConceptPrompts
from eebguard.registry import Plugin, Registry, checked_hyperparameters
from eebguard.erasure.editing import EditSettings

ATTACKS: Registry["Attack"] = Registry("attack", package="eebguard.lab.attacks")


class Attack(Plugin, ABC):
    """Plants a trigger -> target-concept backdoor into a pipeline, in place."""

    described = ("depth", "cite", "defaults")
    depth: str = ""  # "surface" | "shallow" | "deep" | "data"
    cite: str = ""
    #: hyperparameters and their defaults; instances may override any of them
    defaults: dict = {}

    def __init__(self, **overrides):
        self.hp = checked_hyperparameters(self.name, self.defaults, overrides)

    @abstractmethod
    def plant(self, pipe, target: ConceptPrompts, trigger: str, mode: str = "replace",
              settings: EditSettings | None = None) -> dict:
        """Modify ``pipe`` so that ``trigger`` produces ``target``; return a report (losses, seconds)."""


def get_attack(name: str, **overrides) -> Attack:

    return ATTACKS.get(name)(**overrides)
