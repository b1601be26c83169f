"""Reachability: for any prompt, how much of the concept comes back, score-based (against the
reference's concept prediction) and image-based (generations judged by the concept judge)."""
from __future__ import annotations

import torch

from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.context import ScanContext, Timer
from eebguard.scanners.hard_trigger import image_reach

NAME = "reachability"


def prompt_reach(ctx: ScanContext, slot_text: str) -> dict:
    """Score and image reach of the concept's templates with ``slot_text`` in the slot."""
    ids = ctx.tokenizer(slot_text, add_special_tokens=False).input_ids
    obj = ctx.audit_objective()
    with torch.no_grad():
        score = float(obj.reach_slots([ids])[0]) if obj is not None else None
    return {"text": slot_text, "score_reach": score, "image_reach": image_reach(ctx, ids)}


@SCANNERS.register
class ReachabilityScanner(Scanner):
    """How reachable the concept is by its own name (is it erased?) and how well a retained concept still
    renders (the model's utility), as the scale for the trigger's reach."""

    name = NAME
    order = 40
    features = (
        F("reach.name_score", NAME, True, "score reach of the concept's name (erasure completeness; low = erased)"),
        F("reach.name_image", NAME, False, "fraction of name-prompted generations judged as the concept", True),
        F("reach.control_image", NAME, False, "fraction of a retained concept's generations judged as it", True),
        # needs the recovered trigger, which only the reference-scored search finds
        F("reach.trigger_over_control", NAME, True, "best trigger's image reach / control concept's image reach", True),
    )

    def scan(self, ctx: ScanContext) -> ScannerResult:
        res = ScannerResult()
        with Timer(ctx, NAME):
            name = prompt_reach(ctx, ctx.concept)
            if name["score_reach"] is not None:
                res.features["reach.name_score"] = name["score_reach"]
            if name["image_reach"] is not None:
                res.features["reach.name_image"] = name["image_reach"]
            retain = [r for r in ctx.prompts.retain if ctx.judge is not None and ctx.judge.knows(r)]
            if retain:
                from eebguard.probes import concept_prompts
                from eebguard.scanners.context import ScanContext as _Ctx

                control = _Ctx(ctx.suspect, retain[0], concept_prompts(retain[0]), None, ctx.judge, ctx.settings)
                ctl = image_reach(control, control.concept_ids())
                res.features["reach.control_image"] = ctl
                trig = (ctx.cache.get("triggers") or [{}])[0].get("image_reach")
                if trig is not None:
                    res.features["reach.trigger_over_control"] = trig / max(ctl, 1 / ctx.settings.image_samples)
                res.evidence["control"] = {"concept": retain[0], "image_reach": ctl}
            res.evidence["name"] = name
        return res
