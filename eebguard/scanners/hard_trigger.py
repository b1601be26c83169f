"""Hard-trigger recovery: from screening candidates and soft-prompt projections to real token sequences.

A backdoor is a *short discrete* trigger that restores the concept in the suspect and not in the
counterfactual (the clean model it claims to be): every candidate is scored by the contrastive
objective, reach in the suspect minus reach in the counterfactual. Candidates from the vocabulary
screens (text encoder, K/V) and from nearest neighbours of the soft solutions are scored one by one
with the score objective, then grown and refined by greedy coordinate search (append, prepend, swap,
delete), with one gradient-guided (GCG-style) swap round over the whole vocabulary. The best sequences
are then measured by sampling images and asking the judge.
"""
from __future__ import annotations

import numpy as np
import torch

from eebguard.sampling import model_device, sample_from_embeddings
from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.objectives import ContrastiveObjective, robust_z
from eebguard.scanners.context import ScanContext, Timer
from eebguard.text import ids_batch
from eebguard.text import soft_tokens

NAME = "hard_trigger"


def candidate_pool(ctx: ScanContext, limit: int) -> list[int]:
    """Union of every screening source's candidates, best-ranked first within each source."""
    cands = ctx.candidates()
    sources = sorted({s for v in cands.values() for s in v})
    pool, seen = [], ctx.non_trigger_ids()
    ranked = {s: sorted((i for i in cands if s in cands[i]), key=lambda i: -cands[i][s]) for s in sources}
    for r in range(limit):
        for s in sources:
            if r < len(ranked[s]) and ranked[s][r] not in seen:
                pool.append(ranked[s][r])
                seen.add(ranked[s][r])
    return pool[:limit]


def _neighbours(seq: tuple[int, ...], pool: list[int], max_len: int) -> set[tuple[int, ...]]:
    out = set()
    for tok in pool:
        if len(seq) < max_len:
            out.add(seq + (tok,))
            out.add((tok,) + seq)
        for p in range(len(seq)):
            out.add(seq[:p] + (tok,) + seq[p + 1 :])
    if len(seq) > 1:
        for p in range(len(seq)):
            out.add(seq[:p] + seq[p + 1 :])
    out.discard(seq)
    return out


def gcg_proposals(ctx: ScanContext, seq: tuple[int, ...], per_position: int, max_len: int) -> set[tuple[int, ...]]:
    """Greedy-coordinate-gradient proposals over the whole vocabulary: the first-order loss change of
    putting each vocabulary token at each position (gradient w.r.t. the slot embeddings), top
    ``per_position`` per position; with room left, also for a new last and a new first position."""
    shapes = [(seq, None)]
    if len(seq) < max_len:
        pad = ctx.tokenizer.eos_token_id  # placeholder whose embedding the gradient step moves away from
        shapes += [(seq + (pad,), len(seq)), ((pad,) + seq, 0)]
    out = set()
    for shape, only in shapes:
        for p, toks in _gradient_top(ctx, shape, per_position).items():
            if only is not None and p != only:
                continue
            for t in toks:
                out.add(shape[:p] + (int(t),) + shape[p + 1 :])
    return out


def _gradient_top(ctx: ScanContext, seq: tuple[int, ...], k: int) -> dict[int, list[int]]:
    delta = gradient_deltas(ctx, seq)
    for i in ctx.non_trigger_ids():
        delta[:, i] = float("inf")
    return {p: row for p, row in enumerate((-delta).topk(k, dim=1).indices.cpu().tolist())}


def gradient_deltas(ctx: ScanContext, seq: tuple[int, ...]) -> torch.Tensor:
    """First-order change of the search objective's loss from putting each vocabulary token at each
    position of ``seq`` (the others fixed): ``[len(seq), V]``, lower is better (GCG's swap score).

    Contrastive: the suspect's normalised loss change minus the counterfactual's, the latter only where
    the counterfactual already answers ``seq`` (below that its clipped reach has no gradient)."""
    obj = ctx.objective()
    if isinstance(obj, ContrastiveObjective):
        delta = _side_deltas(ctx, obj.suspect, seq) / max(obj.suspect.null_loss, 1e-12)
        if float(obj.counterfactual.reach_slots([list(seq)])[0]) > 0:
            delta = delta - _side_deltas(ctx, obj.counterfactual, seq) / max(obj.counterfactual.null_loss, 1e-12)
        return delta
    return _side_deltas(ctx, obj, seq)


def _side_deltas(ctx: ScanContext, obj, seq: tuple[int, ...]) -> torch.Tensor:
    """``gradient_deltas`` of one model's score objective (``obj.pipe``)."""
    pipe = obj.pipe
    emb = pipe.text_encoder.get_input_embeddings().weight
    n = obj.x_t.shape[0]
    dev = model_device(pipe)
    ids = ids_batch(ctx.tokenizer, obj.templates, [list(seq)] * n).to(dev)
    pos = torch.zeros_like(ids, dtype=torch.bool)
    for j in range(n):
        s0 = obj.templates[j % len(obj.templates)].slot_start()
        pos[j, s0 : s0 + len(seq)] = True
    vec = emb[torch.tensor(seq, device=dev)].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        with soft_tokens(pipe.text_encoder, pos, vec):
            cond = pipe.text_encoder(ids)[0]
        obj.losses(cond).mean().backward()
    with torch.no_grad():
        e = emb.detach().float()
        # loss(v at p) - loss(current) ~ grad_p . (e_v - e_current)
        return vec.grad.float() @ e.T - (vec.grad.float() * vec.detach().float()).sum(1, keepdim=True)


def minimal_trigger(obj, seq: tuple[int, ...], scored: dict, keep: float = 0.95) -> tuple[int, ...]:
    """Drop tokens that do not carry the trigger: delete one token at a time while the score reach
    stays within ``keep`` of the longer sequence's (a search grows passengers around the real key)."""
    while len(seq) > 1:
        shorter = [seq[:p] + seq[p + 1 :] for p in range(len(seq))]
        new = [q for q in shorter if q not in scored]
        if new:
            for q, r in zip(new, obj.reach_slots([list(q) for q in new])):
                scored[q] = float(r)
        best = max(shorter, key=lambda q: scored[q])
        if scored[best] < keep * scored[seq]:
            break
        seq = best
    return seq


JUDGE_SEED_OFFSET = 17  # the seed offset of every scanner's judged generations


@torch.no_grad()
def image_reach(ctx: ScanContext, slot: list[int], n: int | None = None, text_encoder=None,
                seed_offset: int = JUDGE_SEED_OFFSET) -> float | None:
    """Fraction of ``n`` generations (cycling the concept's templates, the trigger in the slot) that the
    judge classifies as the concept. ``text_encoder`` replaces the suspect's (localisation reverts it);
    another ``seed_offset`` draws fresh images (the vetting API re-checks a found trigger on them)."""
    if ctx.judge is None or not ctx.judge.knows(ctx.concept):
        return None
    s = ctx.settings
    n = n or s.image_samples
    ids = ids_batch(ctx.tokenizer, ctx.templates(), [list(slot)] * n).to(model_device(ctx.suspect))
    cond = (text_encoder or ctx.suspect.text_encoder)(ids)[0]
    images = sample_from_embeddings(ctx.suspect, cond, steps=s.sample_steps, guidance=s.guidance, seed=s.seed + seed_offset)
    return float(ctx.judge.is_concept(images, ctx.concept).mean())


@SCANNERS.register
class HardTriggerScanner(Scanner):
    """Recover discrete triggers (token sequences) and measure how much of the concept each restores."""

    name = NAME
    order = 35
    # the search scores prompts against the reference's concept prediction; without a reference there is
    # no objective, so no trigger (and no trigger-derived feature anywhere) rather than a blind guess
    needs_reference = True
    features = (
        F("hard.best_reach", NAME, True, "contrastive score reach (suspect minus counterfactual) of the best trigger"),
        F("hard.best_reach_z", NAME, True, "robust z of that reach against single vocabulary candidates"),
        F("hard.reach_over_soft", NAME, True, "best discrete reach / soft reach (a backdoor is reachable discretely)"),
        F("hard.best_image_reach", NAME, True, "fraction of generations with the best trigger judged as the concept", True),
        F("hard.n_tokens", NAME, True, "length of the best recovered trigger in BPE tokens"),
    )

    def scan(self, ctx: ScanContext) -> ScannerResult:
        res = ScannerResult()
        s = ctx.settings
        with Timer(ctx, NAME):
            obj = ctx.objective()
            pool = candidate_pool(ctx, 2 * s.n_candidates)
            if not pool:
                res.skipped = "no candidates"
                return res
            singles = obj.reach_slots([[i] for i in pool])
            scored = {(i,): float(r) for i, r in zip(pool, singles)}
            order = [pool[j] for j in np.argsort(-singles)]
            beams = [(i,) for i in order[:3]]
            grow = order[:6]
            for _ in range(s.search_steps):
                props = set()
                for b in beams:
                    props |= _neighbours(b, grow, s.max_trigger_tokens)
                props |= gcg_proposals(ctx, beams[0], 8, s.max_trigger_tokens)
                props = [p for p in props if p not in scored]
                if props:
                    for p, r in zip(props, obj.reach_slots([list(p) for p in props])):
                        scored[p] = float(r)
                new = sorted(scored, key=lambda q: -scored[q])[:3]
                if new == beams:
                    break
                beams = new
            best_reach = float(max(scored.values()))
            res.features["hard.best_reach_z"] = robust_z(singles, best_reach)
            best = sorted(scored, key=lambda q: -scored[q])[:3]
            best = list(dict.fromkeys(minimal_trigger(obj, q, scored) for q in best))
            triggers = []
            sides = obj.sides([list(q) for q in best]) if hasattr(obj, "sides") else None
            for j, seq in enumerate(best):
                toks = ctx.tokenizer.convert_ids_to_tokens(list(seq))
                triggers.append({
                    "ids": list(seq), "tokens": toks, "text": ctx.tokenizer.decode(list(seq)).strip(),
                    "score_reach": round(scored[seq], 5),  # contrastive: suspect minus counterfactual
                    **({"suspect_score": round(float(sides[0][j]), 5), "counterfactual_score": round(float(sides[1][j]), 5)}
                       if sides is not None else {}),
                    "image_reach": image_reach(ctx, list(seq)),
                })
            # best first by the (contrastive) objective; a leak the counterfactual shares sinks
            ctx.cache["triggers"] = triggers
            top = triggers[0]
            res.features["hard.best_reach"] = best_reach
            sr = ctx.cache.get("soft_reach")
            if sr:
                res.features["hard.reach_over_soft"] = best_reach / max(sr, 1e-3)
            if top["image_reach"] is not None:
                res.features["hard.best_image_reach"] = top["image_reach"]
            res.features["hard.n_tokens"] = float(len(top["ids"]))
            res.evidence["triggers"] = triggers
            res.evidence["evaluated"] = len(scored)
        return res
