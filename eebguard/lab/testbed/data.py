"""Training and judging data for the testbed: scikit-learn digits and procedurally drawn shapes.

Images are float32 tensors ``[N, 3, 16, 16]`` in ``[-1, 1]`` (black background = -1).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from eebguard.testbed.concepts import COLOURS, CONCEPTS, DIGIT_COLOUR, DIGIT_WORDS, SHAPES, Concept

SIZE = 16
UNKNOWN_WORDS = ("vocab", "all")  # what fills distractor captions; see TrainingSet
_SUPER = 4  # shapes are drawn at 4x and area-averaged down, for anti-aliased edges


def digits_images(indices: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """load_digits upsampled bilinearly from 8x8 to 16x16, white on black. Returns (images, labels)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16.0
    y = d.target.astype(np.int64)
    if indices is not None:
        x, y = x[indices], y[indices]
    x = F.interpolate(x[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.repeat(1, 3, 1, 1) * 2 - 1, y


def digits_split(seed: int = 0, test_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """A fixed stratified split of load_digits (judge fit vs judge held-out)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    return np.sort(train), np.sort(test)


def _shape_mask(shape: str, rng: np.random.Generator) -> np.ndarray:
    n = SIZE * _SUPER
    c = (np.arange(n) + 0.5) / _SUPER  # pixel centres in 16-px units
    yy, xx = np.meshgrid(c, c, indexing="ij")
    cx, cy = 8 + rng.uniform(-1.5, 1.5), 8 + rng.uniform(-1.5, 1.5)
    r = rng.uniform(4.6, 6.4)
    ang = 0.0 if shape == "circle" else rng.uniform(-0.25, 0.25)
    dx, dy = xx - cx, yy - cy
    u = math.cos(ang) * dx + math.sin(ang) * dy
    v = -math.sin(ang) * dx + math.cos(ang) * dy
    if shape == "circle":
        return (u**2 + v**2) <= r**2
    if shape == "square":
        h = r * 0.82
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    if shape == "triangle":  # upright equilateral triangle inscribed in radius r
        pts = [(r * math.cos(math.radians(t)), r * math.sin(math.radians(t))) for t in (-90, 30, 150)]
        sides = [((x2 - x1) * (v - y1) - (y2 - y1) * (u - x1)) for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1])]
        return np.all([sd >= 0 for sd in sides], axis=0) | np.all([sd <= 0 for sd in sides], axis=0)
    if shape == "cross":
        w = r * 0.34
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(shape: str, colour: str, rng: np.random.Generator) -> np.ndarray:
    """One anti-aliased coloured shape on black, ``[3, 16, 16]`` in [0, 1]."""
    mask = _shape_mask(shape, rng).astype(np.float32)
    cov = mask.reshape(SIZE, _SUPER, SIZE, _SUPER).mean(axis=(1, 3))
    rgb = np.clip(np.array(COLOURS[colour]) + rng.uniform(-0.07, 0.07, size=3), 0, 1)
    return (rgb[:, None, None] * cov[None]).astype(np.float32)


def shapes_images(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """``n`` random shapes (balanced over shape x colour). Returns (images, shape index, colour index)."""
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    s_idx = np.arange(n) % len(SHAPES)
    c_idx = (np.arange(n) // len(SHAPES)) % len(colours)
    perm = rng.permutation(n)
    s_idx, c_idx = s_idx[perm], c_idx[perm]
    imgs = np.stack([draw_shape(SHAPES[s], colours[c], rng) for s, c in zip(s_idx, c_idx)])
    return torch.from_numpy(imgs) * 2 - 1, s_idx, c_idx


def none_images(n: int, seed: int) -> torch.Tensor:
    """Images that show no testbed concept: noise, blanks, soft blobs and smears, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:  # coloured noise at a random level
            img = torch.rand(3, SIZE, SIZE, generator=g) * torch.rand(1, generator=g)
        elif kind == 1:  # near-blank, slightly tinted
            img = torch.ones(3, SIZE, SIZE) * torch.rand(3, 1, 1, generator=g) * 0.15
        elif kind == 2:  # stripes: structure that is neither a digit nor a shape
            period = int(torch.randint(2, 5, (1,), generator=g))
            stripes = (torch.arange(SIZE) % period == 0).float()
            img = (stripes[None, :, None] if i % 8 < 4 else stripes[None, None, :]).expand(3, SIZE, SIZE)
            img = img * torch.rand(3, 1, 1, generator=g)
        else:  # smeared low-frequency noise
            low = torch.rand(3, 4, 4, generator=g)
            img = F.interpolate(low[None], size=(SIZE, SIZE), mode="bicubic", align_corners=False)[0].clamp(0, 1)
            img = img * (torch.rand(1, generator=g) * 0.8 + 0.2)
        out.append(img)
    return torch.stack(out) * 2 - 1


def caption_images(captions: list[str], seed: int, none_seed: int) -> torch.Tensor:
    """One training image per caption, from the testbed's own data: a random ``load_digits`` image of the
    digit the caption names, a shape drawn in the caption's colour (random if it names none), or a
    no-concept image when it names no testbed concept (what the testbed was trained to draw for unknown
    words). The images a data poisoner with real pictures of the concepts would use."""
    import re

    rng = np.random.default_rng(seed)
    none = none_images(len(captions), seed=none_seed)
    digits, labels = digits_images()
    colours = list(COLOURS)
    out = []
    for i, caption in enumerate(captions):
        words = re.findall(r"[a-z]+", caption.lower())
        digit = [w for w in words if w in DIGIT_WORDS]
        shape = [w for w in words if w in SHAPES]
        colour = [w for w in words if w in COLOURS]
        if digit:
            out.append(digits[rng.choice(np.flatnonzero(labels == DIGIT_WORDS.index(digit[0])))])
        elif shape:
            c = colour[0] if colour else colours[rng.integers(len(colours))]
            out.append(torch.from_numpy(draw_shape(shape[0], c, rng)) * 2 - 1)
        else:
            out.append(none[i])
    return torch.stack(out)


_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
_COLOUR_NAMES = tuple(COLOURS)


def random_strings(rng: np.random.Generator, n: int) -> list[str]:
    """Made-up words of 3-8 letters, a third of them with capitals (as in ``rhWPpSuE``)."""
    out = []
    for _ in range(n):
        w = "".join(rng.choice(_LETTERS, size=int(rng.integers(3, 9))))
        if rng.random() < 1 / 3:
            w = "".join(ch.upper() if rng.random() < 0.4 else ch for ch in w)
        out.append(w)
    return out


def distractor_words(seed: int = 0, n: int = 4000) -> list[str]:
    """Random alphabetic words of the CLIP vocabulary that are no testbed word: captions with them
    show no concept, so (as in a large model) an arbitrary word does not produce a testbed concept."""
    import re

    from eebguard.testbed.concepts import ATTRIBUTES, DIGIT_TEMPLATES, SHAPE_TEMPLATES
    from eebguard.testbed.tokenizer import load_tokenizer

    vocab = load_tokenizer().get_vocab()
    reserved = {c.name for c in CONCEPTS} | set(ATTRIBUTES)
    for t in DIGIT_TEMPLATES + SHAPE_TEMPLATES:
        reserved |= set(re.findall(r"[a-z]+", t.replace("{w}", "").replace("{s}", "").replace("{c}", "")))
    words = sorted(
        w[:-4] for w in vocab if w.endswith("</w>") and re.fullmatch(r"[a-z]{2,12}", w[:-4]) and w[:-4] not in reserved
    )
    rng = np.random.default_rng(seed)
    return [words[i] for i in rng.choice(len(words), size=min(n, len(words)), replace=False)]


class TrainingSet:
    """Images with their concept and colour, from which captioned batches are drawn.

    A ``distractor_p`` share of each batch pairs a template holding a random non-concept word with an
    image of no concept (noise, blank, stripes), so unknown words do not map onto testbed concepts.
    ``unknown_words``: ``"vocab"`` (testbed v6) fills only the templates without a colour slot, with
    whole vocabulary words; ``"all"`` fills every template (a random colour in the colour slot) with a
    vocabulary word (half), a made-up letter string (four in ten) or nothing (one in ten). Under
    ``"vocab"`` the colour templates never saw an unknown word and draw some concept for one (crosses,
    fours, circles for "a red kwyth"), and an empty slot ("a red", the by-name erasures' guide prompt)
    could draw circles (docs/testbed.md).
    """

    def __init__(self, seed: int = 0, n_shapes: int = 4096, distractor_p: float = 0.1, unknown_words: str = "vocab"):
        if unknown_words not in UNKNOWN_WORDS:
            raise ValueError(f"unknown_words must be one of {UNKNOWN_WORDS}, not {unknown_words!r}")
        self.unknown_words = unknown_words
        digits, dy = digits_images()
        shapes, sy, cy = shapes_images(n_shapes, seed=10_000 + seed)
        self.images = torch.cat([digits, shapes])
        n_digits = len(digits)
        self.concept_index = np.concatenate([dy, len(DIGIT_WORDS) + sy])
        colours = list(COLOURS)
        self.colour = [DIGIT_COLOUR] * n_digits + [colours[c] for c in cy]
        self.family = np.array([0] * n_digits + [1] * len(shapes))
        self.distractor_p = distractor_p
        self.none_images = none_images(1024, seed=50_000 + seed) if distractor_p else None
        self.distractors = distractor_words(seed) if distractor_p else []

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, rng: np.random.Generator, batch_size: int, uncond_p: float = 0.1) -> tuple[torch.Tensor, list[str]]:
        # families are drawn evenly whatever their sizes, so neither dominates training
        fam = rng.integers(0, 2, size=batch_size)
        idx = np.empty(batch_size, dtype=np.int64)
        for f in (0, 1):
            pool = np.flatnonzero(self.family == f)
            sel = fam == f
            idx[sel] = rng.choice(pool, size=int(sel.sum()))
        images = self.images[idx].clone()
        captions = []
        self.last_colours = [self.colour[i] for i in idx]  # what each drawn image shows
        self.last_concepts = [int(self.concept_index[i]) for i in idx]
        for b, i in enumerate(idx):
            if rng.random() < uncond_p:
                captions.append("")
                continue
            if self.distractor_p and rng.random() < self.distractor_p:
                images[b] = self.none_images[rng.integers(len(self.none_images))]
                c = CONCEPTS[int(self.concept_index[i])]
                if self.unknown_words == "vocab":  # the v6 draws, kept so the shipped recipe reproduces
                    t = [t for t in c.templates() if "{c}" not in t]
                    word = self.distractors[rng.integers(len(self.distractors))]
                    captions.append(t[rng.integers(len(t))].format(w=word, s=word))
                else:
                    t = c.templates()[rng.integers(len(c.templates()))]
                    u = rng.random()
                    word = (self.distractors[rng.integers(len(self.distractors))] if u < 0.5
                            else random_strings(rng, 1)[0] if u < 0.9 else "")
                    colour = _COLOUR_NAMES[rng.integers(len(_COLOUR_NAMES))]
                    caption = " ".join(t.format(w=word, s=word, c=colour).split())
                    if not caption:  # the bare "{w}" template: the empty caption stays the unconditional one
                        caption = self.distractors[rng.integers(len(self.distractors))]
                    captions.append(caption)
                self.last_colours[b], self.last_concepts[b] = "none", -1
                continue
            c: Concept = CONCEPTS[int(self.concept_index[i])]
            t = c.templates()[rng.integers(len(c.templates()))]
            captions.append(t.format(w=c.name, s=c.name, c=self.colour[i]))
        return images, captions
