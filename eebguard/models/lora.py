"""LoRA merging (diffusers/peft and kohya layouts) without peft: W += scale * (B @ A) on a copy of the base."""
from __future__ import annotations

import json
import math

import torch

from eebguard.models.errors import BadLora, ShapeMismatch, UnknownLoraTarget

#: key suffix -> role. Longest first so '.lora.down.weight' is not read as '.down.weight'.
SUFFIXES = (
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".alpha", "alpha"),
)
KOHYA = {"lora_unet_": "unet", "lora_te_": "text_encoder"}
#: LyCORIS / DoRA / SDXL variants that a plain low-rank merge would get wrong
UNSUPPORTED_MARKERS = ("dora_scale", "lora_mid", "hada_", "lokr_", "oft_", ".diff", "lora_te1_", "lora_te2_")
COMPONENT_PREFIXES = {"unet.": "unet", "text_encoder.": "text_encoder"}
METADATA_KEY = "lora_adapter_metadata"


def is_lora(keys) -> bool:
    return any(k.startswith(tuple(KOHYA)) or k.endswith(tuple(s for s, r in SUFFIXES if r != "alpha")) for k in keys)


def _split(key: str, where: str) -> tuple[str, str, str, str]:
    """(component, module path, role, layout) for one LoRA key."""
    for marker in UNSUPPORTED_MARKERS:
        if marker in key:
            raise BadLora(f"{where}: key {key} uses an unsupported LoRA variant ({marker.strip('._')})")
    for suffix, role in SUFFIXES:
        if key.endswith(suffix):
            stem = key[: -len(suffix)]
            break
    else:
        raise BadLora(f"{where}: key {key} is not a LoRA tensor")
    for prefix, comp in KOHYA.items():
        if stem.startswith(prefix):
            return comp, stem[len(prefix):], role, "kohya"
    stem = stem.removeprefix("base_model.model.")
    for prefix, comp in COMPONENT_PREFIXES.items():
        if stem.startswith(prefix):
            return comp, stem[len(prefix):].removeprefix("base_model.model."), role, "peft"
    raise BadLora(f"{where}: key {key} names no component (expected unet./text_encoder./lora_unet_/lora_te_)")


def _adapter_metadata(metadata: dict[str, str], where: str) -> dict:
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return {}
    from eebguard.models.safety import parse_json_object

    return parse_json_object(raw, f"{where}: {METADATA_KEY}", err=BadLora)


def _module_alpha(meta: dict, comp: str, module: str) -> float | None:
    patterns = meta.get(f"{comp}.alpha_pattern") or {}
    if isinstance(patterns, dict):
        for pat, a in patterns.items():
            # literal suffix match only: running regexes from an untrusted file invites ReDoS
            if isinstance(pat, str) and (module == pat or module.endswith("." + pat)):
                return a
    return meta.get(f"{comp}.lora_alpha")


def _find_module(pipe, comp: str, name: str, layout: str, tables: dict, where: str):
    model = getattr(pipe, comp, None)
    if model is None:
        raise UnknownLoraTarget(f"{where}: LoRA targets {comp}, which the base does not have")
    if comp not in tables:
        mods = dict(model.named_modules())
        kohya = {}
        for n in mods:
            kohya[n.replace(".", "_")] = n
            if comp == "text_encoder":
                kohya["text_model_" + n.replace(".", "_")] = n  # transformers<5 wrapped CLIP in .text_model
        tables[comp] = (mods, kohya)
    mods, kohya = tables[comp]
    if layout == "kohya":
        full = kohya.get(name)
    else:
        full = name if name in mods else name.removeprefix("text_model.") if comp == "text_encoder" else None
        full = full if full in mods else None
    if not full:
        raise UnknownLoraTarget(f"{where}: LoRA targets {comp}.{name}, which the base does not have")
    return full, mods[full]


def parse_lora(tensors: dict[str, torch.Tensor], metadata: dict[str, str], where: str) -> dict:
    """``{(component, module, layout): {"down", "up", "alpha"}}`` with completeness checks."""
    pairs: dict[tuple[str, str, str], dict] = {}
    for key, t in tensors.items():
        comp, module, role, layout = _split(key, where)
        slot = pairs.setdefault((comp, module, layout), {})
        if role in slot:
            raise BadLora(f"{where}: {comp}.{module} has two {role} tensors")
        slot[role] = t
    for (comp, module, _), slot in pairs.items():
        if "down" not in slot or "up" not in slot:
            raise BadLora(f"{where}: {comp}.{module} lacks its {'up' if 'down' in slot else 'down'} matrix")
    return pairs


def merge_lora(pipe, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None, where: str = "lora",
               scale: float = 1.0) -> list[str]:
    """Merge a LoRA state dict into ``pipe`` in place; returns the merged module names."""
    metadata = metadata or {}
    meta = _adapter_metadata(metadata, where)
    pairs = parse_lora(tensors, metadata, where)
    tables: dict = {}
    merged = []
    with torch.no_grad():
        for (comp, name, layout), slot in sorted(pairs.items()):
            full, module = _find_module(pipe, comp, name, layout, tables, where)
            weight = getattr(module, "weight", None)
            if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) or weight is None:
                raise UnknownLoraTarget(f"{where}: {comp}.{full} is a {type(module).__name__}, not Linear/Conv2d")
            down, up = slot["down"].float(), slot["up"].float()
            rank = down.shape[0] if down.dim() >= 2 else 0
            if down.dim() not in (2, 4) or up.dim() not in (2, 4) or rank == 0 or up.shape[1] != rank:
                raise ShapeMismatch(
                    f"{where}: {comp}.{full} LoRA shapes {list(down.shape)} / {list(up.shape)} do not pair up"
                )
            if "alpha" in slot:
                a = slot["alpha"]
                if a.numel() != 1:
                    raise BadLora(f"{where}: {comp}.{full} alpha is not a scalar")
                alpha = float(a.float().reshape(()))
            else:
                alpha = _module_alpha(meta, comp, full)
            if alpha is None:
                alpha = float(rank)  # no alpha: diffusers/peft convention scale 1
            if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
                raise BadLora(f"{where}: {comp}.{full} alpha is not a finite number")
            # shapes first: multiplying hostile factors before checking could allocate out x in of any size
            fan_in = math.prod(down.shape[1:])
            if up.shape[0] != weight.shape[0] or fan_in != math.prod(weight.shape[1:]) or up.flatten(1).shape[1] != rank:
                raise ShapeMismatch(
                    f"{where}: {comp}.{full} LoRA factors {list(up.shape)} x {list(down.shape)} do not fit weight "
                    f"{list(weight.shape)}"
                )
            delta = up.flatten(1) @ down.flatten(1)
            if down.dim() == 4 and weight.dim() == 4 and down.shape[2:] != weight.shape[2:]:
                raise ShapeMismatch(f"{where}: {comp}.{full} LoRA kernel {list(down.shape[2:])} != conv kernel")
            weight.add_((scale * alpha / rank * delta).reshape(weight.shape).to(weight.dtype))
            merged.append(f"{comp}.{full}")
    return merged


def lora_metadata_json(**per_component) -> dict[str, str]:
    """Helper for writers: ``{'lora_adapter_metadata': json}`` from e.g. ``unet={'lora_alpha': 4, 'r': 4}``."""
    flat = {f"{c}.{k}": v for c, d in per_component.items() for k, v in d.items()}
    return {METADATA_KEY: json.dumps(flat)}
