"""Localisation: where the trigger -> concept link lives. Each suspect component (the text encoder, the
K/V of each cross-attention layer, all K/V at once, the rest of the U-Net) is swapped for the
reference's in turn, and the drop in the recovered trigger's reach is measured."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from eebguard.attention import attn2_names
from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.context import ScanContext, Timer

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


def locate(drops: dict) -> str:
    """The component whose reversal removes the most reach, or "undetermined" when none removes at least
    ``MIN_DROP`` of it (an unchanged component's drop is exactly 0 and must not win by default)."""
    where = max(drops, key=drops.get)
    return where if drops[where] >= MIN_DROP else "undetermined"


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
            sus, ref = ctx.suspect.unet, ctx.reference.unet
            full = float(obj.reach_slots(seq)[0])
            scale = max(full, 1e-3)

            def drop(reach):
                return (full - float(reach)) / scale

            drops = {"text_encoder": drop(obj.reach_slots(seq, text_encoder=ctx.reference.text_encoder)[0])}
            with swapped(sus, ref, _is_kv):
                drops["cross_attention_kv"] = drop(obj.reach_slots(seq)[0])
            with swapped(sus, ref, lambda n: not _is_kv(n)):
                drops["unet_other"] = drop(obj.reach_slots(seq)[0])
            layers = {}
            for layer in attn2_names(sus):
                with swapped(sus, ref, lambda n, l=layer: _is_kv(n, l)):
                    layers[layer] = drop(obj.reach_slots(seq)[0])
            res.features.update({"loc.te_drop": drops["text_encoder"], "loc.kv_drop": drops["cross_attention_kv"],
                                 "loc.unet_drop": drops["unet_other"], "loc.layer_drop_max": max(layers.values())})
            where = locate(drops)
            res.evidence.update({"component": where, "drops": {k: round(v, 4) for k, v in drops.items()},
                                 "layer_drops": {k: round(v, 4) for k, v in layers.items()},
                                 "top_layer": max(layers, key=layers.get), "trigger_reach": round(full, 5)})
            ctx.cache["location"] = where
        return res
