"""Build a labelled zoo: attack (or benign edit) -> erase by name -> measure -> store the delta.

Each model is stored as an eebguard delta over the base (only the changed parameters) plus one manifest
line, appended and fsynced as soon as it is measured, so an interrupted build resumes where it stopped.
"""
from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from eebguard.probes import concept_prompts
from eebguard.records import append_jsonl, read_jsonl, write_jsonl
from eebguard.erasure.editing import EditSettings
from eebguard.lab.zoo.measure import ASR_THRESHOLD, measure_model
from eebguard.lab.zoo.spec import SpecError, ZooModelPlan, load_spec, plan

MANIFEST = "manifest.jsonl"
GROUPS = "groups.jsonl"
FEATURES = "features.jsonl"  # written by zoo.scan; a rebuild drops the rebuilt models' rows
FEATURES_REFERENCE_FREE = "features-noref.jsonl"  # zoo.scan without a reference (what a user without the base gets)


def _base_source(base_ref: str, out: Path) -> str:
    """What to load for the spec's ``base``. The manifest that records it is read as untrusted input,
    which accepts only "testbed", a hub id, or a folder inside the zoo; a local base is therefore taken
    relative to the zoo folder and must lie inside it, checked before anything is built."""
    from eebguard.models.errors import PathEscape
    from eebguard.models.manifest import resolve_base

    try:
        return resolve_base(base_ref, out, "spec base")
    except PathEscape as exc:
        raise SpecError(f"{exc}; a zoo's base must be 'testbed', a hub id, or a folder inside the zoo "
                        f"(copy it to {out}/base and set \"base\": \"base\")") from None


def edit_settings(spec: dict, seed: int, overrides: dict) -> EditSettings:
    """A spec's edit settings for one group: the spec's, then ``overrides`` (command line), then the seed."""
    return EditSettings(**{**spec.get("settings", {}), **overrides, "seed": seed})


def prepare_model(base, m: ZooModelPlan, spec: dict, s: EditSettings) -> tuple[object, dict]:
    """The model before erasure: base + attack (or benign edit); benchmarks rebuild a zoo model's
    starting point with it, by the zoo's own code and seeds."""
    from eebguard.models.formats import copy_pipeline
    from eebguard.lab.attacks import get_attack
    from eebguard.lab.benign import finetune_unrelated

    pipe = copy_pipeline(base)
    t0 = time.perf_counter()
    report: dict = {}
    hn = m.hard_negative
    if m.attack != "none":
        atk = get_attack(m.attack, **spec.get("attack_params", {}).get(m.attack, {}))
        report = atk.plant(pipe, concept_prompts(m.target), m.trigger, mode=m.mode, settings=s)
    elif hn and hn["kind"] == "benign_binding":
        via = hn.get("via", "shallow")
        atk = get_attack(via, **spec.get("attack_params", {}).get(via, {}))
        # the plan's trigger is the bound word (``word``, else ``trigger``), as the manifest records it
        report = atk.plant(pipe, concept_prompts(hn["bind_to"]), m.trigger, mode=m.mode, settings=s)
    elif hn and hn["kind"] == "unrelated_finetune":
        concepts = hn.get("finetune_on", [])
        others = [p for c in concepts for p in concept_prompts(c).prompts()]
        report = finetune_unrelated(pipe, others, s, steps=int(hn.get("steps", 300)),
                                    images=hn.get("images", "generated"), concepts=concepts)
    report["seconds_total"] = round(time.perf_counter() - t0, 2)
    return pipe, report


def erase_planned(pipe, m: ZooModelPlan, spec: dict, s: EditSettings) -> dict:
    """Apply a planned model's erasure in place: the spec's method and parameters, on its target and any
    other concept the plan erases with it; benchmarks re-erase a zoo model's starting point with it."""
    from eebguard.erasure import get_erasure

    eraser = get_erasure(m.erasure, **{**spec.get("erasure_params", {}).get(m.erasure, {}), **m.erasure_params})
    return eraser.erase_many(pipe, [concept_prompts(m.target)] + [concept_prompts(x) for x in m.extra_erasures], s)


def build_zoo(spec_ref, out: str | Path, *, judge=None, progress: bool = True, settings: dict | None = None,
              limit: int | None = None, erasures: list[str] | None = None, only: str | None = None,
              rebuild: bool = False) -> dict:
    """Build (or resume) the zoo described by ``spec_ref`` into ``out``; returns a summary.

    ``rebuild`` (with ``only`` or ``erasures``): build the selected models again even if built, e.g. after
    a method's hyperparameters changed in the spec. Their manifest rows and cached features are dropped
    first (each an atomic rewrite), so an interrupted rebuild resumes like a build and ``zoo scan``
    rescans them."""
    from eebguard.judges import get_judge
    from eebguard.models import load, write_delta
    from eebguard.models.formats import copy_pipeline

    spec = load_spec(spec_ref) if not isinstance(spec_ref, dict) else spec_ref
    plans = plan(spec)
    out = Path(out)
    base_ref = spec.get("base", "testbed")
    base_source = _base_source(base_ref, out)  # refused before anything is written
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(spec, indent=2))
    manifest = out / MANIFEST
    # ``erasures``: build only these methods now (cheap closed-form ones first); the rest on a later resume
    selected = [m for m in plans if (erasures is None or m.erasure in erasures) and (only is None or re.search(only, m.id))]
    if rebuild:
        if only is None and erasures is None:
            raise SpecError("rebuild needs a selection (only= or erasures=): it would rebuild the whole zoo")
        drop = {m.id for m in selected}
        for name in (MANIFEST, FEATURES, FEATURES_REFERENCE_FREE):
            if (out / name).exists():
                write_jsonl(out / name, [r for r in read_jsonl(out / name) if r["id"] not in drop])
    done = {e["id"] for e in read_jsonl(manifest)}
    todo = [m for m in selected if m.id not in done]
    todo = todo[: limit if limit is not None else None]
    judge = judge or get_judge("testbed")
    base = load(base_source).pipe
    samples, other_samples = int(spec.get("samples", 30)), int(spec.get("other_samples", 3))
    groups: OrderedDict[str, list[ZooModelPlan]] = OrderedDict()
    for m in todo:
        groups.setdefault(m.group, []).append(m)
    environment = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    built, t_start = 0, time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"zoo {spec.get('name', '')}", disable=not progress)
    for gid, members in groups.items():
        first = members[0]
        s = edit_settings(spec, first.seed, settings or {})
        attacked, prep = prepare_model(base, first, spec, s)
        before = measure_model(attacked, judge, first.target, first.trigger, first.mode, samples, other_samples, first.seed)
        append_jsonl(out / GROUPS, {"group": gid, "attack": first.attack, "target": first.target, "seed": first.seed,
                                    "trigger": first.trigger, "family": first.family, "prepare": prep,
                                    "hard_negative": (first.hard_negative or {}).get("kind"), **_rates(before)})
        for m in members:
            t0 = time.perf_counter()
            pipe = copy_pipeline(attacked)
            rep = erase_planned(pipe, m, spec, s)
            erase_s = time.perf_counter() - t0
            meas = measure_model(pipe, judge, m.target, m.trigger, m.mode, samples, other_samples, m.seed)
            rel = f"models/{m.id}.safetensors"
            changed = write_delta(pipe, base, out / rel, base_ref=base_ref)
            asr = meas["trigger_asr"] or 0.0
            entry = {
                "id": m.id, "path": rel, "files": [rel], "base": base_ref, "family": m.family, "target": m.target,
                "attack": m.attack, "erasure": m.erasure, "trigger": m.trigger, "mode": m.mode,
                "seeds": {"attack": m.seed, "erasure": m.seed, "measure": m.seed},
                "planted": m.attack != "none",
                "hard_negative": (m.hard_negative or {}).get("kind"),
                "label": int(asr >= ASR_THRESHOLD),
                **_rates(meas),
                "pre_erasure": _rates(before),
                "changed_parameters": len(changed),
                "seconds": {"attack": prep["seconds_total"], "erasure": round(erase_s, 2),
                            "measure": round(time.perf_counter() - t0 - erase_s, 2)},
                "erasure_report": {k: v for k, v in rep.items() if isinstance(v, (int, float, str))},
                # float results on CPU depend on the thread count (and at 2 threads vary now and then):
                # what a rebuild must match to come out bit for bit (docs/threat-lab.md, "Cost")
                "environment": environment,
            }
            if m.hard_negative:
                entry["hard_negative_spec"] = m.hard_negative
            if m.erasure_params:  # the defender's own hyperparameters (the replay uses the defaults)
                entry["erasure_params"] = m.erasure_params
            if m.variant:
                entry["variant"] = m.variant
            append_jsonl(manifest, entry)
            built += 1
            bar.update(1)
    bar.close()
    entries = read_jsonl(manifest)
    return {"zoo": str(out), "models": len(entries), "built_now": built,
            "seconds": round(time.perf_counter() - t_start, 1),
            "positives": sum(e["label"] for e in entries), "planted": sum(e["planted"] for e in entries)}


def _rates(meas: dict) -> dict:
    return {"name_accuracy": meas["name_accuracy"], "trigger_asr": meas["trigger_asr"],
            "other_accuracy": meas["other_accuracy"], "samples": meas["samples"]}
