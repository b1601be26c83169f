"""Does an erasure's leak show up when the auditor applies the *claimed* erasure to the reference?

A found trigger can be a planted backdoor or a leak the erasure itself opened (UCE's closed form opens
them in clean models; docs/evaluation.md). The public base does not answer either
(`trigger_reference_reach.py`), so a suspect-minus-base gain separates nothing. A leak, though, is a
property of the erasure: applying the same method, by name, to the base should open it again, while a
planted trigger needs the attacker's edit, which the base lacks. This benchmark measures that: for each
(target, method) of a zoo it erases the target from the reference with the zoo spec's hyperparameters
and *another seed* than the defender's (the auditor knows the method, not the seed), then samples every
recorded trigger of every model in that "erased reference" with the scanner's own ``image_reach``.

Per model: ``gain`` = the best trigger's recorded suspect reach minus its reach in the erased reference,
``max_gain`` = the largest such difference over the recorded triggers. Both against the label (AUROC),
per zoo and pooled, beside the suspect's reach alone.

Needs only the zoos' records and the reference, not the model deltas:

    python experiments/erased_reference_reach.py ZOO [ZOO ...] --reference BASE [--erasure-seed 1] [--methods uce,rece]
        [--params '{"uce": {"lam": 0.1}}'] [--json PATH]

``--params``: the replay with other hyperparameters than the defenders used (the auditor rarely knows
them); a replay that only works with the exact recipe would be of little use.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from eebguard.lab.tables import MODEL_KINDS, model_kind, table, write


def erased_reference(base, target: str, method: str, spec: dict, seed: int, params: dict | None = None):
    """What a scan's replay builds (``eebguard.erasure.replay.erased_copy``), with the zoo spec's hyperparameters for
    the method and ``params`` over them."""
    from eebguard.erasure.replay import erased_copy

    hp = {**spec.get("erasure_params", {}).get(method, {}), **(params or {}).get(method, {})}
    return erased_copy(base, target, method, seed=seed, params=hp)


def auroc(y, s) -> float | None:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def main(argv=None) -> int:
    from eebguard.lab.evaluate.evaluate import load_rows
    from eebguard.judges import get_judge
    from eebguard.models import load
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext, ScanSettings
    from eebguard.scanners.hard_trigger import image_reach

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--reference", required=True, help="the base the zoos were built from")
    ap.add_argument("--erasure-seed", type=int, default=1, help="seed of the simulated erasure (the zoos' defenders used 0)")
    ap.add_argument("--methods", default=None, help="comma-separated erasure methods to simulate (default: all in the zoo)")
    ap.add_argument("--params", default=None, help='hyperparameters of the replay unlike the defenders\', JSON: {"uce": {"lam": 0.1}}')
    ap.add_argument("--json", default=None, help="results file (default experiments/results/erased_reference_reach.json)")
    a = ap.parse_args(argv)
    base = load(a.reference).pipe
    judge = get_judge("testbed")
    settings = ScanSettings()  # the scan's defaults: the recorded suspect reach used the same
    methods = set(a.methods.split(",")) if a.methods else None
    params = json.loads(a.params) if a.params else None
    rows, sim_seconds, t0 = [], {}, time.perf_counter()
    for zoo in a.zoos:
        spec = json.loads((Path(zoo) / "spec.json").read_text())
        cache: dict = {}
        for r in load_rows([zoo]):
            if methods is not None and r["erasure"] not in methods:
                continue
            triggers = [t for t in (r["scan"]["features"]["evidence"].get("hard_trigger") or {}).get("triggers", [])
                        if t.get("image_reach") is not None]
            if not triggers or not r["erasure"]:
                continue
            key = (r["target"], r["erasure"])
            if key not in cache:
                ts = time.perf_counter()
                cache[key] = erased_reference(base, *key, spec, a.erasure_seed, params)
                sim_seconds[f"{Path(zoo).name}:{key[0]}:{key[1]}"] = round(time.perf_counter() - ts, 1)
            ctx = ScanContext(cache[key], r["target"], concept_prompts(r["target"]), judge=judge, settings=settings)
            ref = [image_reach(ctx, t["ids"]) for t in triggers]
            gains = [t["image_reach"] - x for t, x in zip(triggers, ref)]
            rows.append({"zoo": Path(zoo).name, "id": r["id"], "kind": model_kind(r), "label": r["label"],
                         "attack": r["attack"], "erasure": r["erasure"], "trigger": triggers[0]["text"],
                         "suspect_reach": triggers[0]["image_reach"], "erased_ref_reach": ref[0],
                         "gain": gains[0], "max_gain": max(gains),
                         "max_suspect_reach": max(t["image_reach"] for t in triggers)})
            print(f"{rows[-1]['zoo']:8s} {r['id']:45s} {rows[-1]['kind']:18s} suspect {triggers[0]['image_reach']:.2f} "
                  f"erased ref {ref[0]:.2f} max gain {max(gains):+.2f}", flush=True)
    summary = []
    for z in sorted({x["zoo"] for x in rows}) + ["pooled"]:
        for e in sorted({x["erasure"] for x in rows}) + ["all"]:
            v = [x for x in rows if (z == "pooled" or x["zoo"] == z) and (e == "all" or x["erasure"] == e)]
            y = [x["label"] for x in v]
            summary.append({"zoo": z, "erasure": e, "models": len(v), "positives": int(sum(y)),
                            **{f"auroc_{f}": auroc(y, [x[f] for x in v])
                               for f in ("suspect_reach", "max_suspect_reach", "gain", "max_gain")}})
    kinds = []
    for k in MODEL_KINDS:
        v = [x for x in rows if x["kind"] == k]
        if v:
            kinds.append({"kind": k, "models": len(v), "suspect_reach_ge_0.5": float(np.mean([x["suspect_reach"] >= 0.5 for x in v])),
                          "erased_ref_reach_ge_0.5": float(np.mean([x["erased_ref_reach"] >= 0.5 for x in v])),
                          "median_max_gain": float(np.median([x["max_gain"] for x in v]))})
    print()
    print(table(summary, ["zoo", "erasure", "models", "positives", "auroc_suspect_reach", "auroc_max_suspect_reach",
                          "auroc_gain", "auroc_max_gain"]))
    print()
    print(table(kinds, ["kind", "models", "suspect_reach_ge_0.5", "erased_ref_reach_ge_0.5", "median_max_gain"]))
    payload = {"zoos": a.zoos, "reference": a.reference, "erasure_seed": a.erasure_seed, "params": params,
               "seconds": round(time.perf_counter() - t0, 1), "simulation_seconds": sim_seconds,
               "rows": rows, "summary": summary, "kinds": kinds}
    print("\nwrote", write("erased_reference_reach", payload, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
