"""Concept judges: ``images -> per-concept probabilities``.

A judge decides whether a generated image shows a concept. The testbed ships a scikit-learn judge
for its digits and shapes; users plug in others (a NudeNet or CLIP judge for real models) by
subclassing :class:`Judge` and registering it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from eebguard.registry import Plugin, Registry

JUDGES: Registry["Judge"] = Registry("judge", package="eebguard.judges")


class Judge(Plugin, ABC):
    """Scores images (float tensors in [-1, 1], ``[N, 3, H, W]``) against named concepts."""

    described = ("differentiable",)
    #: concept names this judge can score, in the column order of :meth:`probabilities`
    concepts: tuple[str, ...] = ()
    #: whether :meth:`logits_torch` supports gradients (soft-trigger search without a reference)
    differentiable: bool = False

    @abstractmethod
    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """``[N, len(concepts)]`` probabilities (rows need not sum to one for multi-label judges)."""

    def knows(self, concept: str) -> bool:
        return concept in self.concepts

    def concept_probability(self, images: torch.Tensor, concept: str) -> np.ndarray:
        if not self.knows(concept):
            raise KeyError(f"judge {self.name!r} does not know concept {concept!r}")
        return self.probabilities(_finite(images))[:, self.concepts.index(concept)]

    def is_concept(self, images: torch.Tensor, concept: str) -> np.ndarray:
        """Boolean per image: the judge's verdict that the image shows ``concept``."""
        p = self.probabilities(_finite(images))
        return (p.argmax(1) == self.concepts.index(concept)) if self.exclusive else (
            p[:, self.concepts.index(concept)] >= 0.5
        )

    #: exclusive judges pick one class per image (argmax); multi-label ones threshold each column
    exclusive: bool = True

    def logits_torch(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - optional
        raise NotImplementedError(f"judge {self.name!r} is not differentiable")


def _finite(images: torch.Tensor) -> torch.Tensor:
    """A judge never turns NaN pixels into "not the concept"."""
    if not torch.isfinite(images).all():
        from eebguard.sampling import NonFiniteGeneration

        raise NonFiniteGeneration("non-finite images reached the judge: no verdict can rest on them")
    return images


def get_judge(name: str = "testbed", **kwargs) -> Judge:

    return JUDGES.get(name)(**kwargs)
