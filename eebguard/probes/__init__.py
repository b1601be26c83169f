"""Probes: the prompts a scan or an edit uses for a named concept (concept, trigger, control prompts)."""
from eebguard.probes.templates import ConceptPrompts, concept_prompts

__all__ = ["ConceptPrompts", "concept_prompts"]
