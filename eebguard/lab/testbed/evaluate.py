"""Concept accuracy of a text-to-image model under the testbed judge (``eebguard testbed eval``)."""
from __future__ import annotations

import numpy as np

from eebguard.sampling import sample
from eebguard.testbed.concepts import CONCEPTS, concept

SAMPLING = dict(steps=20, guidance=4.0)


def cycle_prompts(prompts: list[str], n: int, offset: int = 0) -> list[str]:
    return [prompts[(offset + i) % len(prompts)] for i in range(n)]


def concept_prompt_set(name: str, n: int, word: str | None = None) -> list[str]:
    """``n`` prompts cycling through every template (and colour) of concept ``name``."""
    return cycle_prompts(concept(name).prompts(word), n)


def judged_rates(pipe, judge, jobs: list[tuple[str, list[str]]], seed: int = 0, **sampling) -> dict:
    """Sample every job's prompts in one batch; per job, the fraction judged as its concept.

    ``jobs``: (concept name, prompts). Returns ``{index: {"accuracy", "colour_accuracy"?}}``.
    """
    flat = [p for _, ps in jobs for p in ps]
    images = sample(pipe, flat, seed=seed, **{**SAMPLING, **sampling})
    probs = judge.probabilities(images)
    colours = judge.attribute(images) if hasattr(judge, "attribute") else None
    out, i = {}, 0
    for k, (name, ps) in enumerate(jobs):
        sl = slice(i, i + len(ps))
        hit = probs[sl].argmax(1) == judge.concepts.index(name)
        res = {"accuracy": float(hit.mean()), "n": len(ps)}
        if colours is not None:
            wanted = [_colour_in(p) for p in ps]
            pairs = [(w, c) for w, c in zip(wanted, colours[sl]) if w]
            if pairs:
                res["colour_accuracy"] = float(np.mean([w == c for w, c in pairs]))
        out[k] = res
        i += len(ps)
    return out


def _colour_in(prompt: str) -> str | None:
    from eebguard.testbed.concepts import COLOURS

    words = set(prompt.replace(",", " ").split())
    hits = [c for c in COLOURS if c in words]
    return hits[0] if len(hits) == 1 else None


def evaluate_model(pipe, judge=None, samples: int = 20, seed: int = 0, **sampling) -> dict:
    """Per-concept accuracy over ``samples`` generations per concept (both families)."""
    from eebguard.judges import get_judge

    judge = judge or get_judge("testbed")
    jobs = [(c.name, concept_prompt_set(c.name, samples)) for c in CONCEPTS]
    res = judged_rates(pipe, judge, jobs, seed=seed, **sampling)
    per = {c.name: res[k]["accuracy"] for k, c in enumerate(CONCEPTS)}
    colour = [res[k]["colour_accuracy"] for k in res if "colour_accuracy" in res[k]]
    fams = {}
    for f in ("digits", "shapes"):
        vals = [per[c.name] for c in CONCEPTS if c.family == f]
        fams[f] = float(np.mean(vals))
    return {
        "per_concept": per,
        "mean_accuracy": float(np.mean(list(per.values()))),
        "min_accuracy": float(min(per.values())),
        "per_family": fams,
        "colour_accuracy": float(np.mean(colour)) if colour else None,
        "samples": samples,
        "seed": seed,
        "sampler": {**SAMPLING, **sampling, "scheduler": "DDIM", "clip_sample": False},
    }
