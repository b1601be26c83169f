"""MACE's fusion rows: how much does erasing one concept cost the others? (the `fuse_rows` finding in
docs/threat-lab.md)

For each target and seed: MACE on a clean copy of the base, once per ``fuse_rows`` x ``fuse_lam``
setting, then the zoo's own measurement (30 name samples, 3 per other concept). ``"all"`` fuses the LoRA
on every row of the concept prompts (MACE's code; zoos built before 2026-11-29, with ``fuse_lam`` 0.1),
``"span"`` on the concept tokens' rows, ``"slot_to_eos"`` on the rows from the slot through EOS (the
default, with ``fuse_lam`` 10).

    python experiments/mace_fusion.py --base BASE [--targets circle:0,triangle:1,seven:0] [--json PATH]

``--then CONCEPT`` erases a second concept after each target with the same settings, as the zoo's
``second_erasure`` hard negatives did before 2026-11-29 (two MACE runs in a row), and measures the
target's model then; ``--also CONCEPT`` erases both in one MACE run (``erase_many``, MACE's own
multi-concept erasure, what the zoo does now). ``kept_accuracy`` is ``other_accuracy`` without the
second erased concept.
"""
from __future__ import annotations

import argparse
import time

from eebguard.lab.tables import table, write


def main(argv=None) -> int:
    from eebguard.judges import get_judge
    from eebguard.models import load
    from eebguard.models.formats import copy_pipeline
    from eebguard.probes import concept_prompts
    from eebguard.erasure.editing import EditSettings
    from eebguard.erasure import get_erasure
    from eebguard.lab.zoo.measure import measure_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="testbed", help="the model to erase from (a diffusers folder or 'testbed')")
    ap.add_argument("--targets", default="circle:0,triangle:1,seven:0", help="comma list of target:seed")
    ap.add_argument("--rows", default="all,span,slot_to_eos", help="fuse_rows settings to compare")
    ap.add_argument("--lams", default="0.1,10", help="fuse_lam settings to compare")
    ap.add_argument("--then", default=None, help="a second concept to erase after each target, in a second run")
    ap.add_argument("--also", default=None, help="a second concept to erase with each target, in one joint run")
    ap.add_argument("--json", default=None, help="results file (default experiments/results/mace_fusion.json)")
    a = ap.parse_args(argv)
    if a.then and a.also:
        ap.error("--then and --also are two ways to erase the second concept: give one")
    second = a.then or a.also
    base = load(a.base).pipe
    judge = get_judge("testbed")
    rows, t_all = [], time.perf_counter()
    for item in a.targets.split(","):
        target, seed = item.split(":")
        for fuse, lam in ((r, float(x)) for r in a.rows.split(",") for x in a.lams.split(",")):
            pipe = copy_pipeline(base)
            t0 = time.perf_counter()
            mace = get_erasure("mace", fuse_rows=fuse, fuse_lam=lam)
            concepts = [concept_prompts(target)] + ([concept_prompts(a.also)] if a.also else [])
            rep = mace.erase_many(pipe, concepts, EditSettings(seed=int(seed)))
            if a.then:
                mace.erase(pipe, concept_prompts(a.then), EditSettings(seed=int(seed)))
            m = measure_model(pipe, judge, target, None, samples=30, other_samples=3, seed=int(seed))
            kept = [v for o, v in m["other_per_concept"].items() if o != second]
            rows.append({"target": target, "seed": int(seed), "then": a.then, "also": a.also, "fuse_rows": fuse,
                         "fuse_lam": lam, "name_accuracy": m["name_accuracy"],
                         "other_accuracy": m["other_accuracy"], "kept_accuracy": sum(kept) / len(kept),
                         "other_per_concept": m["other_per_concept"],
                         "lora_loss_end": rep.get("loss_end", rep.get(f"{target}.loss_end")),
                         "seconds": round(time.perf_counter() - t0, 1)})
    print(table(rows, ["target", "seed", "fuse_rows", "fuse_lam", "name_accuracy", "other_accuracy", "kept_accuracy",
                       "lora_loss_end", "seconds"]))
    write("mace_fusion", {"base": a.base, "then": a.then, "also": a.also, "seconds": round(time.perf_counter() - t_all, 1),
                          "rows": rows}, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
