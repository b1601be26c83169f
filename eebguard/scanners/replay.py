"""Replay of the claimed erasure: is the recovered trigger the erasure's own leak, or a path made before
it? The reference erased by the claimed method (``threats.replay``) is sampled under the triggers the
discrete search found; a leak of the method reaches the concept there too, a planted path does not."""
from __future__ import annotations

from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.context import ScanContext, Timer
from eebguard.scanners.hard_trigger import image_reach

NAME = "erasure_replay"
TOKENIZER_MISMATCH = "the model's tokenizer differs from the reference's"


def replay_gains(erased: ScanContext, triggers: list[dict]) -> ScannerResult:
    """Features and evidence of the replay for ``triggers`` (dicts with ``ids`` and the suspect's
    ``image_reach``, best first): each trigger's reach in the suspect minus its reach in ``erased``, on
    the same judged seeds."""
    res = ScannerResult()
    measured = [t for t in triggers if t.get("image_reach") is not None]
    if not measured:
        res.skipped = "no trigger with a judged reach"
        return res
    reach = [image_reach(erased, list(t["ids"])) for t in measured]
    if any(r is None for r in reach):
        res.skipped = "the judge does not know the concept"
        return res
    gains = [t["image_reach"] - r for t, r in zip(measured, reach)]
    res.features["replay.gain"] = gains[0]
    res.features["replay.max_gain"] = max(gains)
    res.evidence["triggers"] = [{"text": t.get("text"), "ids": list(t["ids"]), "suspect_reach": t["image_reach"],
                                 "replay_reach": r} for t, r in zip(measured, reach)]
    return res


@SCANNERS.register
class ErasureReplayScanner(Scanner):
    """Judge the recovered triggers in the reference erased by the claimed method (a leak answers there)."""

    name = NAME
    order = 60  # last: it only reads the recovered triggers
    needs_reference = True
    needs_judge = True
    needs_trigger = True
    features = (
        F("replay.gain", NAME, True, "best trigger's judged reach in the suspect minus in the reference erased by "
          "the claimed method (high: a path the erasure alone does not open)", True),
        F("replay.max_gain", NAME, True, "largest such difference over the recovered triggers", True),
    )

    def can_run(self, ctx: ScanContext) -> str | None:
        if not ctx.claimed_erasure:
            return "no claimed erasure to replay"
        return super().can_run(ctx)

    def scan(self, ctx: ScanContext) -> ScannerResult:
        from eebguard.threats.replay import shared_erased_copy

        if ctx.reference.tokenizer.get_vocab() != ctx.tokenizer.get_vocab():
            return ScannerResult(skipped=TOKENIZER_MISMATCH)
        with Timer(ctx, NAME):
            try:
                erased = shared_erased_copy(ctx.shared, ctx.reference, ctx.concept, ctx.claimed_erasure,
                                            device=ctx.settings.device, also=ctx.claimed_also)
            except MemoryError as exc:  # the runner keeps the other scanners' results for RuntimeErrors
                raise RuntimeError(f"out of memory building the replay: {exc}") from None
            res = replay_gains(ScanContext(erased, ctx.concept, ctx.prompts, judge=ctx.judge, settings=ctx.settings),
                               ctx.cache["triggers"])
            res.evidence["method"] = ctx.claimed_erasure
            if ctx.claimed_also:
                res.evidence["also_erased"] = list(ctx.claimed_also)
        return res
