"""The testbed's concepts: two families so nothing downstream can overfit one.

* ``digits``: the ten classes of scikit-learn's ``load_digits`` (white strokes on black).
* ``shapes``: procedurally drawn shapes; the shape is the concept (what an erasure targets), the colour
  an attribute that prompts also control and the judge also checks.
"""
from __future__ import annotations

from dataclasses import dataclass

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {  # RGB in [0, 1]
    "red": (1.0, 0.15, 0.1),
    "green": (0.1, 0.9, 0.2),
    "blue": (0.15, 0.3, 1.0),
    "yellow": (1.0, 0.9, 0.1),
}
DIGIT_COLOUR = "white"
ATTRIBUTES = (DIGIT_COLOUR,) + tuple(COLOURS)

DIGIT_TEMPLATES = (
    "a photo of the digit {w}",
    "handwritten {w}",
    "the number {w}",
    "an image of the digit {w}",
    "a handwritten {w} on a black background",
    "{w}",
)
# {c}: colour word, {s}: shape word; templates without {c} leave the colour free.
SHAPE_TEMPLATES = (
    "a {c} {s}",
    "a {c} {s} on a black background",
    "a photo of a {c} {s}",
    "an image of a {s} in {c}",
    "a {s}",
    "a drawing of a {s}",
)


@dataclass(frozen=True)
class Concept:
    name: str  # the word a prompt uses and an erasure targets
    family: str  # "digits" | "shapes"
    index: int  # class index of the judge

    def templates(self) -> tuple[str, ...]:
        return DIGIT_TEMPLATES if self.family == "digits" else SHAPE_TEMPLATES

    def prompts(self, word: str | None = None, colour: str | None = None) -> list[str]:
        """Every caption of this concept, with ``word`` in the concept's slot (default: its name).

        Shape templates without a colour slot appear once; those with one once per colour (or only with
        ``colour`` when given).
        """
        word = self.name if word is None else word
        out = []
        for t in self.templates():
            if "{c}" in t:
                for c in [colour] if colour else COLOURS:
                    out.append(t.format(s=word, c=c))
            else:
                out.append(t.format(w=word, s=word))
        return out


CONCEPTS: tuple[Concept, ...] = tuple(
    [Concept(w, "digits", i) for i, w in enumerate(DIGIT_WORDS)]
    + [Concept(s, "shapes", len(DIGIT_WORDS) + i) for i, s in enumerate(SHAPES)]
)
BY_NAME = {c.name: c for c in CONCEPTS}
FAMILIES = {"digits": [c for c in CONCEPTS if c.family == "digits"], "shapes": [c for c in CONCEPTS if c.family == "shapes"]}
#: judge class for images that show no testbed concept (noise, blanks, smudges)
NONE_CLASS = "none"
JUDGE_CLASSES = tuple(c.name for c in CONCEPTS) + (NONE_CLASS,)


def concept(name: str) -> Concept:
    try:
        return BY_NAME[name.lower().strip()]
    except KeyError:
        raise KeyError(f"unknown testbed concept {name!r}; known: {', '.join(BY_NAME)}") from None


def family_of(name: str) -> str:
    return concept(name).family
