"""How far apart does a testbed's text encoder keep made-up words? (the root cause of the deep attack's
non-specific planting and of the weak `circle` erasure on the v6 testbed; docs/threat-lab.md)

For each base: median/min/max pairwise distance of full-prompt encodings ("a photo of the digit {w}",
all 24 positions) between 12 made-up trigger words and between 8 concept names, their ratio, the share
of generations with a made-up word in digit and shape templates that the judge calls "none", and the
per-concept accuracy (`eebguard testbed eval`). Train a candidate with, e.g.,

    eebguard testbed train --out zoos/v7/base --seed 0 --steps 1400 --identity-weight 1.0 --unknown-words all
    python experiments/testbed_word_identity.py --candidate zoos/v7/base [--candidate ...] [--json experiments/results/testbed_word_identity.json]
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import torch

MADE_UP = ["tkwx", "blorf", "qzvex", "zqmupt", "rhWPpSuE", "kwyth", "zebu", "vpraxo", "jzfn", "xkcdz", "fnord", "trxbz"]
NAMES = ["seven", "three", "circle", "triangle", "five", "square", "one", "eight"]
TEMPLATES = {"digits": ["a photo of the digit {}", "handwritten {}"], "shapes": ["a {}", "a drawing of a {}"],
             # the colour templates carry 20 of the shapes family's 22 prompts; v6 never trained unknown words there
             "shape_colour": ["a red {}", "a photo of a blue {}"]}


def pair_distances(pipe, words: list[str], template: str = "a photo of the digit {}") -> np.ndarray:
    from eebguard.text import encode

    with torch.no_grad():
        h = encode(pipe, [template.format(w) for w in words]).flatten(1)
    d = torch.cdist(h, h)
    i, j = torch.triu_indices(len(words), len(words), 1)
    return d[i, j].numpy()


def measure(path: str, judge, samples: int) -> dict:
    from eebguard.models import load
    from eebguard.sampling import sample
    from eebguard.lab.testbed.evaluate import evaluate_model

    pipe = load(path).pipe
    made, names = pair_distances(pipe, MADE_UP), pair_distances(pipe, NAMES)
    out = {"base": path,
           "made_up_distance": {"median": float(np.median(made)), "min": float(made.min()), "max": float(made.max())},
           "name_distance": {"median": float(np.median(names)), "min": float(names.min()), "max": float(names.max())},
           "ratio_of_medians": float(np.median(made) / np.median(names))}
    for fam, tpls in TEMPLATES.items():
        prompts = [t.format(w) for w in MADE_UP for t in tpls]
        seen = collections.Counter(judge.concepts[i] for i in judge.probabilities(sample(pipe, prompts, seed=2)).argmax(1))
        out[f"unknown_word_none_{fam}"] = seen["none"] / len(prompts)
        out[f"unknown_word_shape_{fam}"] = sum(seen[c] for c in ("circle", "square", "triangle", "cross")) / len(prompts)
    ev = evaluate_model(pipe, samples=samples, seed=0)
    out["mean_accuracy"], out["min_accuracy"] = ev["mean_accuracy"], ev["min_accuracy"]
    return out


def main(argv=None) -> int:
    from eebguard.judges import get_judge

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate", required=True, action="append",
                    help="a trained testbed base folder to compare with the shipped one (repeatable)")
    ap.add_argument("--samples", type=int, default=20, help="judged samples per concept for the accuracy")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    judge = get_judge("testbed")
    rows = [measure(b, judge, a.samples) for b in ["data/testbed/base", *a.candidate]]
    print("| base | made-up pair distance (median [min, max]) | concept-name pair distance | ratio | "
          "unknown word -> none (digits / shapes / shape colour templates) | unknown word -> a shape (colour "
          "templates) | concept accuracy (mean / min) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        m, n = r["made_up_distance"], r["name_distance"]
        print(f"| `{r['base']}` | {m['median']:.1f} [{m['min']:.1f}, {m['max']:.1f}] | {n['median']:.1f} "
              f"[{n['min']:.1f}, {n['max']:.1f}] | {r['ratio_of_medians']:.2f} | {r['unknown_word_none_digits']:.2f} / "
              f"{r['unknown_word_none_shapes']:.2f} / {r['unknown_word_none_shape_colour']:.2f} | "
              f"{r['unknown_word_shape_shape_colour']:.2f} | {r['mean_accuracy']:.3f} / {r['min_accuracy']:.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
