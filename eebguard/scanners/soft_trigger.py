"""Soft-trigger scanner: gradient search for continuous token embeddings that bring the concept back.

A soft prompt can reach an erased concept even in clean models (Pham et al., CCE, ICLR 2024; Zhang et
al., UnlearnDiffAtk, ECCV 2024), so what it measures is *residual reachability*, reported apart from
backdoor evidence (discrete triggers). Its solutions also seed the discrete search.
"""
from __future__ import annotations

import numpy as np
import torch

from eebguard.sampling import model_device
from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.context import ScanContext, Timer
from eebguard.scanners.objectives import ScoreObjective
from eebguard.text import ids_batch
from eebguard.text import soft_tokens

NAME = "soft_trigger"


def soft_search(ctx: ScanContext, objective, k: int, steps: int, lr: float = 5e-2,
                init: torch.Tensor | None = None, seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Optimise ``k`` slot embeddings to minimise the objective (a ``ScoreObjective`` or, without a
    reference, a ``JudgeObjective``); returns (vectors, reach per step, measured before each update)."""
    pipe = ctx.suspect
    emb = pipe.text_encoder.get_input_embeddings().weight.detach()
    g = torch.Generator().manual_seed(seed)
    if init is None:  # start from random vocabulary tokens: an uninformed point of the embedding space
        init = emb[torch.randint(0, emb.shape[0] - 2, (k,), generator=g)].float().cpu()
    vec = init.clone().to(model_device(pipe)).requires_grad_(True)
    n = objective.n
    placeholder = ctx.tokenizer.bos_token_id  # any id: its embedding is replaced
    ids = ids_batch(ctx.tokenizer, objective.templates, [[placeholder] * k] * n).to(vec.device)
    pos = torch.zeros_like(ids, dtype=torch.bool)
    for j in range(n):
        s0 = objective.templates[j % len(objective.templates)].slot_start()
        pos[j, s0 : s0 + k] = True
    opt = torch.optim.Adam([vec], lr=lr)
    chunk = min(n, objective.grad_batch)  # gradients accumulate over chunks: memory holds one chunk's graph
    curve = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        parts = []
        for c0 in range(0, n, chunk):
            rows = slice(c0, min(n, c0 + chunk))
            with soft_tokens(pipe.text_encoder, pos[rows], vec):
                cond = pipe.text_encoder(ids[rows])[0]
            losses = objective.losses(cond, start=c0)
            # one chunk: the mean, exactly as the recorded scans computed it; chunks: their share of it
            (losses.mean() if chunk == n else losses.sum() / n).backward()
            parts.append(losses.detach())
        opt.step()
        curve.append(objective.reach_of(torch.cat(parts)))
    return vec.detach().cpu(), curve


def nearest_tokens(ctx: ScanContext, vec: torch.Tensor, k: int) -> list[list[int]]:
    """Per soft vector, the ``k`` vocabulary tokens nearest by cosine in input-embedding space."""
    emb = ctx.suspect.text_encoder.get_input_embeddings().weight.detach().float().cpu()
    sims = torch.nn.functional.normalize(vec.float(), dim=-1) @ torch.nn.functional.normalize(emb, dim=-1).T
    for i in ctx.special_ids():
        sims[:, i] = -2
    return sims.topk(k, dim=1).indices.tolist()


@SCANNERS.register
class SoftTriggerScanner(Scanner):
    """Soft-prompt search: k embeddings in the concept's slot, optimised so the suspect's noise prediction
    matches the reference's for the concept over fixed noised reference samples; without a reference,
    so that a differentiable judge calls the suspect's own few-step generations the concept.

    With a reference, controls from the same model: random (unoptimised) embeddings, and the same search
    toward a concept that was not erased (how reachable anything is by soft prompts here). Without one
    (the weaker, judge-driven mode): the random starting embedding's judged reach is the control.
    """

    name = NAME
    order = 30
    features = (
        F("soft.reach", NAME, True, "reach of the optimised soft prompt (1 - loss / unconditional loss)"),
        F("soft.reach_random", NAME, True, "reach of random embeddings in the slot (control)"),
        F("soft.reach_control", NAME, True, "reach of the same search toward a non-erased control concept"),
        F("soft.relative", NAME, True, "(soft.reach - random) / (control - random): residual reachability"),
        F("soft.early_reach", NAME, True, "reach after a fifth of the steps (how easy the concept is to reach)"),
        F("soft.judge_reach", NAME, False, "without a reference: the judged concept probability of few-step "
          "generations under the soft prompt optimised for it (highest over the search)", True, True),
        F("soft.judge_early_reach", NAME, False, "without a reference: the same over the first fifth of the "
          "search (how easy the concept is to reach)", True, True),
        F("soft.judge_start", NAME, False, "without a reference: the judged concept probability under the "
          "random starting embedding (control)", True, True),
    )

    def can_run(self, ctx: ScanContext) -> str | None:
        if ctx.reference is None and ctx.judge_objective() is None:
            return "needs a reference model, or a differentiable judge that knows the concept"
        return super().can_run(ctx)

    def scan(self, ctx: ScanContext) -> ScannerResult:
        with Timer(ctx, NAME):
            return self._with_reference(ctx) if ctx.reference is not None else self._with_judge(ctx)

    def _with_reference(self, ctx: ScanContext) -> ScannerResult:
        s, res = ctx.settings, ScannerResult()
        obj = ctx.audit_objective()  # the erasure audit: how reachable the concept is, leak or not
        vec, curve = soft_search(ctx, obj, s.soft_tokens, s.soft_steps, seed=s.seed)
        reach = max(curve)
        with torch.no_grad():
            emb = ctx.suspect.text_encoder.get_input_embeddings().weight.detach()
            g = torch.Generator().manual_seed(s.seed + 5)
            rand = [obj.reach_slots([[int(i)]])[0] for i in torch.randint(0, emb.shape[0] - 2, (8,), generator=g)]
        control = _control_reach(ctx, s)
        r0 = float(np.median(rand))
        res.features["soft.reach"] = reach
        res.features["soft.reach_random"] = r0
        res.features["soft.early_reach"] = max(curve[: max(1, len(curve) // 5)])
        if control is not None:
            res.features["soft.reach_control"] = control
            res.features["soft.relative"] = (reach - r0) / max(control - r0, 1e-3)
        near = nearest_tokens(ctx, vec, 16)
        for row in near:
            ctx.add_candidates("soft_projection", row, [reach] * len(row))
        ctx.cache["soft_vectors"] = vec
        ctx.cache["soft_reach"] = reach
        res.evidence["loss_curve_reach"] = [round(c, 4) for c in curve[:: max(1, len(curve) // 24)]]
        res.evidence["nearest_tokens"] = [ctx.tokenizer.convert_ids_to_tokens(r[:5]) for r in near]
        return res

    def _with_judge(self, ctx: ScanContext) -> ScannerResult:
        s, res = ctx.settings, ScannerResult()
        obj = ctx.judge_objective()
        vec, curve = soft_search(ctx, obj, s.soft_tokens, s.judge_steps, seed=s.seed)
        res.features["soft.judge_reach"] = max(curve)
        res.features["soft.judge_early_reach"] = max(curve[: max(1, len(curve) // 5)])
        res.features["soft.judge_start"] = curve[0]
        # what the soft prompt is near in the vocabulary, judged the same way (evidence, not a trigger:
        # a soft prompt reaches erased concepts in clean models too)
        near = nearest_tokens(ctx, vec, 8)
        reach = obj.reach_slots([[i] for i in near[0]]) if len(near) == 1 else None
        res.evidence["mode"] = "judge"
        res.evidence["loss_curve_reach"] = [round(c, 4) for c in curve[:: max(1, len(curve) // 24)]]
        res.evidence["nearest_tokens"] = [ctx.tokenizer.convert_ids_to_tokens(r[:5]) for r in near]
        if reach is not None:
            res.evidence["nearest_tokens_judged"] = [
                {"token": t, "reach": round(float(r), 4)} for t, r in zip(ctx.tokenizer.convert_ids_to_tokens(near[0]), reach)]
        return res


def _control_reach(ctx: ScanContext, s) -> float | None:
    """The same search toward a retained (non-erased) concept, half the steps."""
    retain = list(ctx.prompts.retain)
    if not retain:
        return None
    from eebguard.probes import concept_prompts

    control = ScanContext(ctx.suspect, retain[0], concept_prompts(retain[0]), ctx.reference, ctx.judge, s)
    obj = ScoreObjective(control)
    _, curve = soft_search(control, obj, s.soft_tokens, max(10, s.soft_steps // 2), seed=s.seed + 1)
    return max(curve)
