"""Localisation: where the trigger -> concept link lives. Each suspect component (the text encoder, the
K/V of each cross-attention layer, all K/V at once, the rest of the U-Net) is swapped for the
counterfactual's (the clean model the suspect claims to be; the reference without one) in turn, and the
drop in the recovered trigger's reach is measured.

The component is named from the *judged* drop when a judge knows the concept and some reversal changes
the images (the same seeded generations with and without each reversal, so the comparison is paired):
the score objective is a proxy that can disagree with what the images show (a backdoor trigger whose
generations the judge calls the concept while its noise prediction sits far from the reference's,
after an erasure that moved every prompt's prediction). When no reversal changes the judged images,
the score drops decide. Per-layer drops and the ``loc.*`` features stay score-based."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from eebguard.attention import attn2_names
from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.objectives import ContrastiveObjective
from eebguard.scanners.context import ScanContext, Timer, same_weights
from eebguard.scanners.hard_trigger import image_reach

NAME = "localisation"
COMPONENTS = ("text_encoder", "cross_attention_kv", "unet_other")


@contextmanager
def swapped(unet, reference_unet, select):
    """Temporarily copy the reference's parameters for every name ``select`` accepts."""
    ref = dict(reference_unet.named_parameters())
    saved = {}
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if select(n):
                saved[n] = p.detach().clone()
                p.copy_(ref[n].to(p.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            params = dict(unet.named_parameters())
            for n, v in saved.items():
                params[n].copy_(v)


def _is_kv(n: str, layer: str | None = None) -> bool:
    kv = ".attn2.to_k." in n or ".attn2.to_v." in n
    return kv and (layer is None or n.startswith(layer + "."))


#: a component is named only if reverting it removes at least this share of the trigger's reach
MIN_DROP = 0.1


def revert_target(ctx: ScanContext):
    """What a component reverts to: the counterfactual when the scan has one, else the reference."""
    return ctx.counterfactual if ctx.counterfactual is not None else ctx.reference


def component_drops(ctx: ScanContext, reach, full: float, scale: float) -> dict:
    """Relative drop ``(full - reach) / scale`` when each coarse component reverts to the reference;
    ``reach(text_encoder)`` measures the trigger under the U-Net's current weights (``None``: the suspect's
    encoder). An unchanged text encoder drops exactly 0, so it is not measured."""
    base = revert_target(ctx)
    sus, ref = ctx.suspect.unet, base.unet
    te = 0.0 if same_weights(ctx.suspect.text_encoder, base.text_encoder) else (full - reach(base.text_encoder)) / scale
    drops = {"text_encoder": te}
    with swapped(sus, ref, _is_kv):
        drops["cross_attention_kv"] = (full - reach(None)) / scale
    with swapped(sus, ref, lambda name: not _is_kv(name)):
        drops["unet_other"] = (full - reach(None)) / scale
    return drops


def judged_drops(ctx: ScanContext, seq: list[int]) -> dict | None:
    """Relative drop of the trigger's judged image reach when each coarse component reverts, or None
    without a judge for the concept or when the trigger's own image reach is 0 (nothing to remove)."""
    n = 2 * ctx.settings.image_samples  # twice the usual: a drop is a difference of two noisy fractions
    full = image_reach(ctx, seq, n)
    if not full:
        return None
    drops = component_drops(ctx, lambda te: image_reach(ctx, seq, n, text_encoder=te), full, full)
    return {"image_reach": full, "drops": drops}


def name_component(drops: dict, image_drops: dict | None = None) -> tuple[str, str]:
    """(component, basis). Judged drops decide when they name a component; when no reversal changes the
    judged images (a binary judge saturates: the concept in 16 of 16 images with or without a component),
    the continuous score drops decide."""
    if image_drops:
        where = locate(image_drops)
        if where != "undetermined":
            return where, "image"
    return locate(drops), "score"


def locate(drops: dict) -> str:
    """The component whose reversal removes the most reach, or "undetermined" when none removes at least
    ``MIN_DROP`` of it (an unchanged component's drop is exactly 0 and must not win by default) or when
    several share the largest drop (judged drops tie when reverting any one component removes every
    judged concept image: a link that needs all of them names none, and ``max`` would pick by dict order)."""
    where = max(drops, key=drops.get)
    if drops[where] < MIN_DROP or sum(d == drops[where] for d in drops.values()) > 1:
        return "undetermined"
    return where


def _reach(obj, seq, **kw) -> float:
    """The trigger's reach under ``obj``; a contrastive one floored at 0 (below it the suspect does not
    answer the trigger at all, and how far below says nothing about where the link was)."""
    v = float(obj.reach_slots(seq, **kw)[0])
    return max(v, 0.0) if isinstance(obj, ContrastiveObjective) else v


@SCANNERS.register
class LocalisationScanner(Scanner):
    """Reach drop of the recovered trigger when each component reverts to the reference."""

    name = NAME
    order = 55
    needs_reference = True
    needs_trigger = True
    features = (
        F("loc.te_drop", NAME, True, "relative reach drop when the text encoder reverts to the reference"),
        F("loc.kv_drop", NAME, True, "relative reach drop when every attn2 K/V reverts"),
        F("loc.unet_drop", NAME, True, "relative reach drop when the U-Net outside attn2 K/V reverts"),
        F("loc.layer_drop_max", NAME, True, "largest relative reach drop of a single attn2 layer's K/V"),
    )

    @torch.no_grad()
    def scan(self, ctx: ScanContext) -> ScannerResult:
        res = ScannerResult()
        triggers = ctx.cache["triggers"]
        with Timer(ctx, NAME):
            obj = ctx.objective()
            seq = [list(triggers[0]["ids"])]
            sus, ref = ctx.suspect.unet, revert_target(ctx).unet
            full = _reach(obj, seq)
            scale = max(full, 1e-3)
            drops = component_drops(ctx, lambda te: _reach(obj, seq, text_encoder=te), full, scale)
            layers = {}
            for layer in attn2_names(sus):
                with swapped(sus, ref, lambda n, l=layer: _is_kv(n, l)):
                    layers[layer] = (full - _reach(obj, seq)) / scale
            res.features.update({"loc.te_drop": drops["text_encoder"], "loc.kv_drop": drops["cross_attention_kv"],
                                 "loc.unet_drop": drops["unet_other"], "loc.layer_drop_max": max(layers.values())})
            judged = judged_drops(ctx, seq[0])
            where, basis = name_component(drops, judged["drops"] if judged else None)
            res.evidence.update({"component": where, "basis": basis,
                                 "drops": {k: round(v, 4) for k, v in drops.items()},
                                 "layer_drops": {k: round(v, 4) for k, v in layers.items()},
                                 "top_layer": max(layers, key=layers.get), "trigger_reach": round(full, 5)})
            if judged:
                res.evidence["image_drops"] = {k: round(v, 4) for k, v in judged["drops"].items()}
                res.evidence["trigger_image_reach"] = judged["image_reach"]
            ctx.cache["location"] = where
        return res
