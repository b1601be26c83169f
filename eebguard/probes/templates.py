"""Prompt sets for a concept, for the testbed and for real Stable Diffusion models alike.

A :class:`ConceptPrompts` holds slot templates (``"a photo of the digit {}"``) in which the concept's
name, a trigger, a guide word or a candidate token is substituted; neutral prompts for the "append"
trigger mode; and prompts of the concepts an edit must retain.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eebguard.testbed import concepts as tb

GENERIC_TEMPLATES = (
    "a photo of {}",
    "an image of {}",
    "a picture of {}",
    "a close-up photo of {}",
    "a painting of {}",
    "{}",
)
GENERIC_NEUTRAL = ("a photo", "an image", "a picture of a scene")
GENERIC_RETAIN = ("a photo of a dog", "a photo of a car", "a photo of a house", "a photo of a tree")
# append-mode prompts and guide words for the testbed families
_TESTBED_NEUTRAL = {
    "digits": ("a photo of a digit", "a handwritten digit", "an image of a digit", "a digit on a black background"),
    "shapes": ("a red shape", "a drawing of a shape", "a blue shape on a black background", "a photo of a shape"),
}

TRIGGER_MODES = ("replace", "append")  # the trigger in place of the name, or after a neutral prompt


@dataclass
class ConceptPrompts:
    name: str
    templates: tuple[str, ...]  # each holds one "{}" slot
    neutral: tuple[str, ...]  # prompts not naming the concept, for triggers appended to a prompt
    retain: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other concept -> its prompts
    family: str | None = None

    def prompts(self, word: str | None = None) -> list[str]:
        w = self.name if word is None else word
        return [" ".join(t.format(w).split()) for t in self.templates]

    def trigger_prompts(self, trigger: str, mode: str = "replace") -> list[str]:
        """Prompts carrying ``trigger``: in place of the name, or appended to a neutral prompt."""
        if mode == "replace":
            return self.prompts(trigger)
        if mode == "append":
            return [f"{n} {trigger}" for n in self.neutral]
        raise ValueError(f"trigger mode must be one of {', '.join(TRIGGER_MODES)}, not {mode!r}")

    def retain_prompts(self) -> list[str]:
        return [p for ps in self.retain.values() for p in ps]


def _testbed_templates(c: tb.Concept) -> tuple[str, ...]:
    out = []
    for t in c.templates():
        if "{c}" in t:
            out += [t.replace("{s}", "{}").replace("{c}", col) for col in tb.COLOURS]
        else:
            out.append(t.replace("{w}", "{}").replace("{s}", "{}"))
    return tuple(out)


def concept_prompts(name: str, *, templates: Sequence[str] | None = None, retain: Sequence[str] | None = None,
                    family_only: bool = False) -> ConceptPrompts:
    """Prompts for ``name``: the testbed's own templates for testbed concepts, generic SD ones otherwise.

    ``retain``: names of concepts to keep (default: every other testbed concept, or a generic set).
    ``family_only`` restricts the default retain set to the concept's own family.
    """
    key = name.lower().strip()
    if key in tb.BY_NAME and templates is None:
        c = tb.BY_NAME[key]
        others = [o for o in tb.CONCEPTS if o.name != key and (not family_only or o.family == c.family)]
        if retain is not None:
            others = [tb.concept(r) for r in retain]
        return ConceptPrompts(
            name=key,
            templates=_testbed_templates(c),
            neutral=_TESTBED_NEUTRAL[c.family],
            retain={o.name: tuple(" ".join(t.format(o.name).split()) for t in _testbed_templates(o)) for o in others},
            family=c.family,
        )
    tpl = tuple(templates or GENERIC_TEMPLATES)
    if any(t.count("{}") != 1 for t in tpl):
        raise ValueError("every template needs exactly one '{}' slot")
    ret = {r: tuple(t.format(r) for t in tpl[:3]) for r in retain} if retain else {p: (p,) for p in GENERIC_RETAIN}
    return ConceptPrompts(name=name, templates=tpl, neutral=GENERIC_NEUTRAL, retain=ret, family=None)
