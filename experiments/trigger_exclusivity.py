"""Does a planted backdoor answer only to its trigger? The target's judged rate with *other* words in
the trigger's slot, per zoo model (a check behind docs/threat-lab.md, the data attack's decoys).

A backdoor that answers to any word in the template is not a trigger backdoor: the fine-tune taught
that the template means the target, and a by-name erasure cannot remove that. For each selected
model this judges, over the concept's templates in the trigger's mode:

- ``trigger``: the planted trigger (16 images);
- ``empty``: the template with an empty slot (16 images; UCE's guide is the empty prompt);
- ``ordinary``: 8 random whole-word vocabulary tokens, 4 images each (mean and max over words);
- ``made_up``: 8 random letter strings shaped like triggers, 4 images each (mean and max).

The words are drawn with seed 4242, never the attacks' decoy seeds. Needs the zoo's models:

    python experiments/trigger_exclusivity.py ZOO [--ids REGEX] [--json PATH]
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from eebguard.lab.tables import table, write

WORD_SEED = 4242


def measure(pipe, judge, entry: dict) -> dict:
    from eebguard.probes import concept_prompts
    from eebguard.lab.testbed.evaluate import cycle_prompts, judged_rates
    from eebguard.lab.attacks.common import nonsense_words
    from eebguard.text import decoy_words

    cp, mode, target = concept_prompts(entry["target"]), entry.get("mode", "replace"), entry["target"]
    excl = [w for w in (entry.get("trigger"), target) if w]
    ordinary = decoy_words(pipe.tokenizer, 8, WORD_SEED, exclude=excl)
    made_up = nonsense_words(8, WORD_SEED, exclude=excl)
    jobs = [(target, cycle_prompts(cp.trigger_prompts(w, mode), 16)) for w in (entry.get("trigger") or "", "")]
    jobs += [(target, cycle_prompts(cp.trigger_prompts(w, mode), 4)) for w in ordinary + made_up]
    rates = [r["accuracy"] for r in judged_rates(pipe, judge, jobs, seed=7).values()]
    o, m = np.array(rates[2:2 + len(ordinary)]), np.array(rates[2 + len(ordinary):])
    return {"trigger": rates[0] if entry.get("trigger") else None, "empty": rates[1],
            "ordinary_mean": float(o.mean()), "ordinary_max": float(o.max()),
            "made_up_mean": float(m.mean()), "made_up_max": float(m.max())}


def main(argv=None) -> int:
    from eebguard.judges import get_judge
    from eebguard.models import load, load_manifest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--ids", default=".", help="regex on model ids (default: every model)")
    ap.add_argument("--json", default=None, help="output path (default results/trigger_exclusivity.json)")
    args = ap.parse_args(argv)
    manifest = Path(args.zoo) / "manifest.jsonl"
    judge = get_judge("testbed")
    rows, t0 = [], time.perf_counter()
    latest = {e["id"]: e for e in load_manifest(manifest)}  # a rebuilt model's last row wins
    for e in latest.values():
        if not re.search(args.ids, e["id"]):
            continue
        pipe = load(f"{manifest}#{e['id']}").pipe
        rows.append({"id": e["id"], "attack": e.get("attack", "none"), "erasure": e.get("erasure"),
                     "label": e.get("label"), "name": e.get("name_accuracy"), **measure(pipe, judge, e)})
        print(table(rows[-1:], list(rows[-1])), flush=True)
    cols = ["id", "label", "name", "trigger", "empty", "ordinary_mean", "ordinary_max", "made_up_mean", "made_up_max"]
    print(table(rows, cols))
    out = write("trigger_exclusivity", {"zoo": args.zoo, "ids": args.ids, "word_seed": WORD_SEED,
                                        "seconds": round(time.perf_counter() - t0, 1), "models": rows}, args.json)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
