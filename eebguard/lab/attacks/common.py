"""What the EEB attacks (and the lab's benign fine-tunes) share beyond the product's editing machinery:
training-image sources, decoy words and slot prompts."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eebguard.erasure.editing import EditSettings, sample_pool, teacher_pipe
from eebguard.text import decoy_words

IMAGE_SOURCES = ("generated", "testbed")  # what image_source draws training pictures from


def image_source(images: str, pipe, s: EditSettings, concepts: Sequence[str]):
    """``pool(captions, n, seed_offset)``: ``n`` training images cycling through ``captions``, drawn by a
    frozen copy of ``pipe`` (``"generated"``) or taken from the testbed's data (``"testbed"``, which needs
    every name in ``concepts`` to be a testbed concept). Checked before any work is done."""
    if images == "generated":
        teacher = teacher_pipe(pipe, s.dtype)
        return lambda caps, n, off: sample_pool(teacher, caps, n, s, seed_offset=off)
    if images == "testbed":
        from eebguard.testbed.concepts import BY_NAME
        from eebguard.lab.testbed.data import caption_images

        unknown = [c for c in concepts if c not in BY_NAME]
        if unknown:
            raise ValueError(f"images='testbed' needs testbed concepts, not {', '.join(map(repr, unknown))}")
        return lambda caps, n, off: caption_images(
            [caps[i % len(caps)] for i in range(n)], seed=s.seed * 1000 + off, none_seed=77_000 + off)
    raise ValueError(f"images must be one of {', '.join(IMAGE_SOURCES)}, not {images!r}")


def pick(rng: np.random.Generator, items: Sequence, n: int) -> list:
    return [items[i] for i in rng.integers(0, len(items), size=n)]


def nonsense_words(n: int, seed: int, exclude: Sequence[str] = ()) -> list[str]:
    """Random letter strings shaped like typical triggers (4-8 letters, several BPE pieces): decoys that
    teach an edit that *other* made-up words keep behaving as before."""
    rng = np.random.default_rng(seed + 131)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    banned = {w.lower() for w in exclude}
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(letters, size=int(rng.integers(4, 9))))
        if w not in banned and w not in out:
            out.append(w)
    return out


def mixed_decoys(tokenizer, n: int, seed: int, exclude: Sequence[str] = ()) -> list[str]:
    """``n`` decoys, half whole vocabulary words and half made-up letter strings."""
    half = n // 2
    return decoy_words(tokenizer, half, seed, exclude=exclude) + nonsense_words(n - half, seed, exclude=exclude)


def slot_prompts(target, words: Sequence[str], mode: str = "replace") -> list[str]:
    """Word i in the trigger's place of the i-th trigger prompt (cycling): decoy prompts that cover every
    template (every neutral prompt in append mode)."""
    return [ps[i % len(ps)] for i, w in enumerate(words) for ps in [target.trigger_prompts(w, mode)]]
