"""Zoo specifications: which models a zoo holds (JSON).

A spec lists *groups* (one base model, target concept, seed and trigger per group, crossed with attacks
and erasure methods) and *hard negatives* (benign edits a naive detector would flag)::

    {"name": "default", "base": "testbed", "samples": 30, "other_samples": 3, "mode": "replace",
     "groups": [{"target": "seven", "seed": 0, "triggers": {"surface": "rhWPpSuE", "deep": "zq"},
                 "trigger": "sks", "attacks": ["none", "surface", ...], "erasures": ["uce", ...]}],
     "hard_negatives": [{"kind": "benign_binding", "target": "seven", "word": "blorf", "bind_to": "three",
                         "via": "shallow", "erasures": ["uce"], "seed": 0},
                        {"kind": "benign_binding", "tag": "surface", "via": "surface", ...}, ...],
     "settings": {"batch_size": 16}, "attack_params": {"deep": {"steps": 400}}, "erasure_params": {}}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from eebguard.paths import data_path

HARD_NEGATIVE_KINDS = ("benign_binding", "unrelated_finetune", "second_erasure")


class SpecError(ValueError):
    """A zoo spec that cannot be built (one-line message)."""


@dataclass
class ZooModelPlan:
    id: str
    group: str  # models of one group share the attacked (pre-erasure) model
    target: str
    family: str | None
    seed: int
    attack: str  # "none" or an attack name
    trigger: str | None
    erasure: str
    mode: str = "replace"
    hard_negative: dict | None = None
    extra_erasures: list[str] = field(default_factory=list)


def load_spec(spec: str | Path) -> dict:
    """A spec from a path, or a shipped one by name (``default``, ``heldout``, ``design``, ``tiny``)."""
    p = Path(spec)
    if not p.is_file():
        shipped = data_path("zoo_specs", f"{spec}.json")
        if not shipped.is_file():
            raise SpecError(f"no zoo spec at {spec} and no shipped spec of that name")
        p = shipped
    try:
        obj = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("groups", []), list):
        raise SpecError(f"{p}: a spec is a JSON object with a 'groups' list")
    return obj


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s.lower())


def plan(spec: dict) -> list[ZooModelPlan]:
    """Every model of the spec, in build order (grouped so each attacked model is made once)."""
    from eebguard.testbed.concepts import BY_NAME
    from eebguard.threats.attacks import ATTACKS
    from eebguard.threats.erasure import ERASURES

    mode = spec.get("mode", "replace")
    out: list[ZooModelPlan] = []
    for g in spec.get("groups", []):
        target, seed = g["target"], int(g.get("seed", 0))
        fam = BY_NAME[target].family if target in BY_NAME else g.get("family")
        triggers = g.get("triggers", {})
        for attack in g.get("attacks", ["none"]):
            if attack != "none" and attack not in ATTACKS:
                raise SpecError(f"unknown attack {attack!r}; known: {', '.join(ATTACKS.names())}")
            trigger = triggers.get(attack, g.get("trigger"))
            if not trigger:
                raise SpecError(f"group {target}/{seed}: no trigger for attack {attack!r}")
            gid = f"{_slug(target)}-{attack}-s{seed}"
            for erasure in g.get("erasures", []):
                if erasure not in ERASURES:
                    raise SpecError(f"unknown erasure {erasure!r}; known: {', '.join(ERASURES.names())}")
                out.append(ZooModelPlan(f"{gid}-{erasure}", gid, target, fam, seed, attack, trigger, erasure,
                                        g.get("mode", mode)))
    for h in spec.get("hard_negatives", []):
        kind = h.get("kind")
        if kind not in HARD_NEGATIVE_KINDS:
            raise SpecError(f"unknown hard-negative kind {kind!r}; known: {', '.join(HARD_NEGATIVE_KINDS)}")
        target, seed = h["target"], int(h.get("seed", 0))
        fam = BY_NAME[target].family if target in BY_NAME else h.get("family")
        tag = f"_{_slug(str(h['tag']))}" if h.get("tag") else ""  # tells apart two hard negatives of one kind and target
        gid = f"{_slug(target)}-hn_{kind}{tag}-s{seed}"
        for erasure in h.get("erasures", []):
            out.append(ZooModelPlan(f"{gid}-{erasure}", gid, target, fam, seed, "none",
                                    h.get("word") or h.get("trigger"), erasure, h.get("mode", mode),
                                    hard_negative=dict(h), extra_erasures=[h["also_erase"]] if kind == "second_erasure" else []))
    ids = [m.id for m in out]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise SpecError(f"duplicate model ids in spec: {sorted(dup)[:3]}")
    return out
