"""Which other concepts an erasure costs, per concept, on a clean and on an attacked model of one spec.

The zoos measure the other concepts with 3 images each (39 in all), enough for the mean the threat
lab's bound needs but not to say *which* concept an erasure took. For each named group of a spec this
rebuilds the model before erasure (the zoo's own code and seeds), erases it, and judges every other
concept with ``--other-samples`` images before and after (a check behind docs/threat-lab.md, "What
misses the issue's bounds"):

    python experiments/erasure_other_concepts.py --spec heldout --groups three-none-s1,three-data-s1 --erasure esd_u

Beside the judged accuracies it measures, per other concept, two score-level quantities on the same
fixed noised samples of the target (the x_t the erasure itself trains on; no sampling loop):

- ``overlap`` (before erasure): the cosine between the concept's guidance direction
  eps(x_t, c) - eps(x_t, "") and the target's. ESD pushes the target's direction to its negative
  through weights every prompt shares, so a concept whose direction points the same way is the one a
  first-order argument says it drags along.
- ``spill``: how far the erasure moved the concept's prediction, relative to how far it moved the
  target's, ||eps_after(x_t, c) - eps_before(x_t, c)|| / ||eps_after(x_t, target) - eps_before(x_t, target)||.
"""
from __future__ import annotations

import argparse
import sys
import time

from eebguard.lab.tables import table, write


def _predictions(pipe, names, x, t):
    """Mean over each concept's templates of eps(x_t, prompt), and eps(x_t, ""): {name: tensor}."""
    import torch

    from eebguard.probes import concept_prompts
    from eebguard.text import encode

    out = {}
    with torch.no_grad():
        for n in ["", *names]:
            prompts = concept_prompts(n).prompts() if n else [""]
            eps = [pipe.unet(x, t, encoder_hidden_states=encode(pipe, [p]).expand(len(x), -1, -1)).sample
                   for p in prompts]
            out[n] = torch.stack(eps).mean(0)
    return out


def _directions(before, after, target, x, t) -> dict:
    """Per other concept: guidance-direction cosine with the target before erasure, and the spill ratio."""
    import torch.nn.functional as F

    names = [n for n in _concepts() if n != target]
    pb, pa = _predictions(before, [target, *names], x, t), _predictions(after, [target, *names], x, t)
    d = {n: (pb[n] - pb[""]).flatten(1) for n in [target, *names]}
    moved = (pa[target] - pb[target]).flatten(1).norm(dim=1)
    return {n: {"overlap": float(F.cosine_similarity(d[n], d[target], dim=1).mean()),
                "spill": float(((pa[n] - pb[n]).flatten(1).norm(dim=1) / moved).mean())} for n in names}


def _concepts() -> list[str]:
    from eebguard.testbed.concepts import CONCEPTS

    return [c.name for c in CONCEPTS]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="heldout")
    ap.add_argument("--groups", default="three-none-s1,three-data-s1", help="group ids of the spec")
    ap.add_argument("--erasure", default="esd_u")
    ap.add_argument("--other-samples", type=int, default=12)
    ap.add_argument("--direction-samples", type=int, default=16, help="noised target samples for overlap/spill")
    ap.add_argument("--json", default=None, help="default: results/erasure_other_concepts.json")
    a = ap.parse_args()

    from eebguard.judges import get_judge
    from eebguard.models import load
    from eebguard.models.formats import copy_pipeline
    from eebguard.probes import concept_prompts
    from eebguard.erasure import get_erasure
    from eebguard.lab.zoo.build import edit_settings, prepare_model
    from eebguard.lab.zoo.measure import measure_model
    from eebguard.lab.zoo.spec import load_spec, plan

    spec = load_spec(a.spec)
    plans = {m.id: m for m in plan(spec)}
    judge, base = get_judge("testbed"), load(spec.get("base", "testbed")).pipe
    samples = int(spec.get("samples", 30))
    rows, runs = [], []
    for gid in [g for g in a.groups.split(",") if g]:
        m = plans.get(f"{gid}-{a.erasure}")
        if m is None:
            raise SystemExit(f"{a.spec} has no model {gid}-{a.erasure}")
        s = edit_settings(spec, m.seed, {})
        t0 = time.perf_counter()
        attacked, _ = prepare_model(base, m, spec, s)
        erased = copy_pipeline(attacked)
        get_erasure(m.erasure, **spec.get("erasure_params", {}).get(m.erasure, {})).erase_many(
            erased, [concept_prompts(m.target)], s)
        import torch

        from eebguard.erasure.editing import noised, sample_pool
        pool = sample_pool(attacked, concept_prompts(m.target).prompts(), a.direction_samples, s, seed_offset=11)
        x, t, _ = noised(pool, attacked.scheduler, torch.Generator().manual_seed(12345))
        directions = _directions(attacked, erased, m.target, x, t)
        meas = {when: measure_model(p, judge, m.target, m.trigger, m.mode, samples, a.other_samples, m.seed)
                for when, p in (("before", attacked), ("after", erased))}
        runs.append({"id": m.id, "seconds": round(time.perf_counter() - t0, 1),
                     "directions": directions,
                     **{w: {k: v for k, v in x.items() if k != "sampler"} for w, x in meas.items()}})
        for c in meas["before"]["other_per_concept"]:
            rows.append({"model": m.id, "concept": c, "before": meas["before"]["other_per_concept"][c],
                         "after": meas["after"]["other_per_concept"][c], **directions.get(c, {})})
        rows.append({"model": m.id, "concept": "(mean)", "before": meas["before"]["other_accuracy"],
                     "after": meas["after"]["other_accuracy"]})
    print(table(rows, ["model", "concept", "before", "after", "overlap", "spill"]))
    path = write("erasure_other_concepts", {"spec": a.spec, "erasure": a.erasure, "other_samples": a.other_samples,
                                            "models": runs, "rows": rows,
                                            "command": "python experiments/erasure_other_concepts.py " + " ".join(sys.argv[1:])},
                 a.json)
    print(path)


if __name__ == "__main__":
    main()
