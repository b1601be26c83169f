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
    # this model's erasure hyperparameters over the spec's ``erasure_params`` (a defender who tuned the
    # method differently from its published defaults, which a scan's replay uses)
    erasure_params: dict = field(default_factory=dict)
    variant: str | None = None


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


TOP_KEYS = {"name", "description", "base", "samples", "other_samples", "mode", "groups", "hard_negatives",
            "settings", "attack_params", "erasure_params"}
GROUP_KEYS = {"target", "seed", "trigger", "triggers", "attacks", "erasures", "family", "mode", "variants"}
HARD_NEGATIVE_KEYS = {"kind", "target", "seed", "erasures", "mode", "tag", "family", "word", "trigger", "bind_to",
                      "via", "finetune_on", "steps", "images", "also_erase", "erasure_params"}
# a group's variant: some of its attacked models erased again with other hyperparameters (same attacked
# model, so no attack is trained twice); ids end in ``-{tag}``
VARIANT_KEYS = {"tag", "attacks", "erasures", "erasure_params"}


def _fail(where: str, msg: str):
    raise SpecError(f"{where}: {msg}")


def _keys(obj, known: set, where: str) -> dict:
    if not isinstance(obj, dict):
        _fail(where, f"must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - known)
    if unknown:
        _fail(where, f"unknown keys {unknown}; known: {', '.join(sorted(known))}")
    return obj


def _text(obj: dict, key: str, where: str, required: bool = True):
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v.strip():
        _fail(f"{where}.{key}", f"must be a non-empty string, got {v!r}")
    return v


def _count(obj: dict, key: str, where: str, low: int = 0):
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        _fail(f"{where}.{key}", f"must be a whole number >= {low}, got {v!r}")
    return v


def _names(obj: dict, key: str, registry, where: str, allow: tuple = (), default: tuple = ()) -> list:
    v = obj.get(key, list(default))
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        _fail(f"{where}.{key}", "must be a list of names")
    for x in v:
        if x not in allow and x not in registry:
            _fail(f"{where}.{key}", f"unknown {registry.kind} {x!r}; known: {', '.join((*allow, *registry.names()))}")
    return v


def _entries(spec: dict, key: str, known: set, erasures):
    """``(place, entry)`` for each entry of a groups-like list, with the keys every entry shares checked."""
    entries = spec.get(key, [])
    if not isinstance(entries, list):
        _fail(f"spec.{key}", "must be a list")
    for i, e in enumerate(entries):
        where = f"{key}[{i}]"
        _keys(e, known, where)
        _text(e, "target", where)
        _count(e, "seed", where)
        for k in ("trigger", "family"):
            _text(e, k, where, required=False)
        _names(e, "erasures", erasures, where)
        yield where, e


def validate_spec(spec) -> dict:
    """Check a spec's every key and value before anything is built: a typo or a value of the wrong kind
    in a spec otherwise surfaces (or is silently ignored) after an hour of building."""
    from dataclasses import fields

    from eebguard.registry import checked_hyperparameters
    from eebguard.lab.attacks import ATTACKS, get_attack
    from eebguard.probes.templates import TRIGGER_MODES
    from eebguard.erasure.editing import EditSettings
    from eebguard.lab.attacks.common import IMAGE_SOURCES
    from eebguard.erasure import ERASURES, get_erasure

    _keys(spec, TOP_KEYS, "spec")
    for key in ("name", "description", "base"):
        if key in spec and not isinstance(spec[key], str):
            _fail(f"spec.{key}", f"must be a string, got {spec[key]!r}")
    _count(spec, "samples", "spec", 1)
    _count(spec, "other_samples", "spec", 1)  # 0 would judge no image: a NaN accuracy
    modes = [("spec", spec)]
    for key, registry, make in (("attack_params", ATTACKS, get_attack), ("erasure_params", ERASURES, get_erasure)):
        params = spec.get(key, {})
        if not isinstance(params, dict):
            _fail(f"spec.{key}", "must be an object of {name: {hyperparameter: value}}")
        for name, hp in params.items():
            if name not in registry:
                _fail(f"spec.{key}", f"unknown {registry.kind} {name!r}; known: {', '.join(registry.names())}")
            if not isinstance(hp, dict):
                _fail(f"spec.{key}.{name}", "must be an object of hyperparameters")
            try:
                make(name, **hp)
            except (TypeError, ValueError) as exc:
                _fail(f"spec.{key}", str(exc))
    settings = spec.get("settings", {})
    free = {f.name: f.default for f in fields(EditSettings) if f.name not in ("seed", "dtype")}
    try:  # the seed comes from each group, the dtype from the command line
        checked_hyperparameters("spec.settings", free, _keys(settings, set(free), "spec.settings"))
    except (TypeError, ValueError) as exc:
        raise SpecError(str(exc)) from None
    def entry_params(obj: dict, where: str) -> None:
        params = obj.get("erasure_params", {})
        if not isinstance(params, dict):
            _fail(f"{where}.erasure_params", "must be an object of {name: {hyperparameter: value}}")
        for name, hp in params.items():
            if name not in ERASURES or not isinstance(hp, dict):
                _fail(f"{where}.erasure_params", f"{name!r}: must be a known erasure with an object of hyperparameters")
            try:
                get_erasure(name, **{**spec.get("erasure_params", {}).get(name, {}), **hp})
            except (TypeError, ValueError) as exc:
                _fail(f"{where}.erasure_params", str(exc))

    for where, g in _entries(spec, "groups", GROUP_KEYS, ERASURES):
        attacks = _names(g, "attacks", ATTACKS, where, allow=("none",), default=("none",))
        variants = g.get("variants", [])
        if not isinstance(variants, list):
            _fail(f"{where}.variants", "must be a list")
        tags = []
        for j, v in enumerate(variants):
            vw = f"{where}.variants[{j}]"
            _keys(v, VARIANT_KEYS, vw)
            tags.append(_text(v, "tag", vw))
            for a in _names(v, "attacks", ATTACKS, vw, allow=("none",), default=tuple(attacks)):
                if a not in attacks:
                    _fail(f"{vw}.attacks", f"{a!r} is not one of the group's attacks")
            _names(v, "erasures", ERASURES, vw)
            entry_params(v, vw)
        if len(set(tags)) != len(tags):
            _fail(f"{where}.variants", "tags must differ")
        triggers = _keys(g.get("triggers", {}), set(ATTACKS.names()) | {"none"}, f"{where}.triggers")
        for a in triggers:
            _text(triggers, a, f"{where}.triggers")
        for a in attacks:
            if not triggers.get(a, g.get("trigger")):
                _fail(where, f"no trigger for attack {a!r}")
        modes.append((where, g))
    for where, h in _entries(spec, "hard_negatives", HARD_NEGATIVE_KEYS, ERASURES):
        kind = h.get("kind")
        if kind not in HARD_NEGATIVE_KINDS:
            _fail(f"{where}.kind", f"unknown hard-negative kind {kind!r}; known: {', '.join(HARD_NEGATIVE_KINDS)}")
        _text(h, "word", where, required=False)
        if isinstance(h.get("tag"), (dict, list)):
            _fail(f"{where}.tag", f"must be a JSON scalar, got {h['tag']!r}")
        if kind == "benign_binding":
            _text(h, "bind_to", where)
            if not (h.get("word") or h.get("trigger")):
                _fail(where, "a benign binding needs the 'word' it binds")
            via = h.get("via", "shallow")
            if not isinstance(via, str) or via not in ATTACKS:
                _fail(f"{where}.via", f"unknown attack {h.get('via')!r}; known: {', '.join(ATTACKS.names())}")
        elif kind == "unrelated_finetune":
            on = h.get("finetune_on", [])
            if not isinstance(on, list) or not on or not all(isinstance(c, str) and c for c in on):
                _fail(f"{where}.finetune_on", "must be a non-empty list of concept names")
            _count(h, "steps", where, 1)
            if h.get("images", "generated") not in IMAGE_SOURCES:
                _fail(f"{where}.images", f"must be one of {', '.join(IMAGE_SOURCES)}, got {h.get('images')!r}")
        elif kind == "second_erasure":
            _text(h, "also_erase", where)
        entry_params(h, where)
        modes.append((where, h))
    for where, obj in modes:
        if obj.get("mode", "replace") not in TRIGGER_MODES:
            _fail(f"{where}.mode", f"must be one of {', '.join(TRIGGER_MODES)}, got {obj.get('mode')!r}")
    return spec


def plan(spec: dict) -> list[ZooModelPlan]:
    """Every model of the spec, in build order (grouped so each attacked model is made once); the spec is
    validated first."""
    from eebguard.testbed.concepts import BY_NAME

    validate_spec(spec)
    mode = spec.get("mode", "replace")
    out: list[ZooModelPlan] = []
    for g in spec.get("groups", []):
        target, seed = g["target"], int(g.get("seed", 0))
        fam = BY_NAME[target].family if target in BY_NAME else g.get("family")
        triggers = g.get("triggers", {})
        for attack in g.get("attacks", ["none"]):
            trigger = triggers.get(attack, g.get("trigger"))
            gid = f"{_slug(target)}-{attack}-s{seed}"
            for erasure in g.get("erasures", []):
                out.append(ZooModelPlan(f"{gid}-{erasure}", gid, target, fam, seed, attack, trigger, erasure,
                                        g.get("mode", mode)))
            for v in g.get("variants", []):
                if attack not in v.get("attacks", g.get("attacks", ["none"])):
                    continue
                tag = _slug(v["tag"])
                for erasure in v.get("erasures", []):
                    out.append(ZooModelPlan(f"{gid}-{erasure}-{tag}", gid, target, fam, seed, attack, trigger, erasure,
                                            g.get("mode", mode), erasure_params=dict(v.get("erasure_params", {}).get(erasure, {})),
                                            variant=tag))
    for h in spec.get("hard_negatives", []):
        kind = h["kind"]
        target, seed = h["target"], int(h.get("seed", 0))
        fam = BY_NAME[target].family if target in BY_NAME else h.get("family")
        tag = f"_{_slug(str(h['tag']))}" if h.get("tag") else ""  # tells apart two hard negatives of one kind and target
        gid = f"{_slug(target)}-hn_{kind}{tag}-s{seed}"
        for erasure in h.get("erasures", []):
            out.append(ZooModelPlan(f"{gid}-{erasure}", gid, target, fam, seed, "none",
                                    h.get("word") or h.get("trigger"), erasure, h.get("mode", mode),
                                    hard_negative=dict(h), extra_erasures=[h["also_erase"]] if kind == "second_erasure" else [],
                                    erasure_params=dict(h.get("erasure_params", {}).get(erasure, {}))))
    ids = [m.id for m in out]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise SpecError(f"duplicate model ids in spec: {sorted(dup)[:3]}")
    return out
