"""Text-embedding scanner: which tokens' encodings moved toward the concept (surface backdoors)."""
from __future__ import annotations

import numpy as np
import torch

from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.context import ScanContext, Timer
from eebguard.scanners.objectives import robust_z
from eebguard.scanners.vocab import (approach, baseline, baseline_pipe, centered_cos, concept_rows, top_k, vocab_rows,
                                     vocabulary)

NAME = "text_embedding"


@SCANNERS.register
class TextEmbeddingScanner(Scanner):
    """Encoder activations of every vocabulary token in a concept template, suspect vs counterfactual (the
    clean model the suspect claims to be; the reference when the scan has none).

    With a reference: per-token *approach* toward the concept, log(|E_b(v) - E_r(c)| / |E_s(v) - E_r(c)|)
    (slot and EOS rows), and input-embedding drift |e_s(v) - e_r(v)| / |e_r(v)|; both as robust z-scores
    of the vocabulary maximum. Without one: how far the token most similar to the
    concept (under the suspect alone) stands out of the vocabulary.
    """

    name = NAME
    order = 10
    conditions_unet = False
    features = (
        F("te.approach_z", NAME, True, "robust z of the largest encoder approach toward the concept over the vocabulary"),
        F("te.approach_max", NAME, True, "largest encoder approach toward the concept (log distance ratio)"),
        F("te.embedding_drift_z", NAME, True, "robust z of the largest relative input-embedding change"),
        F("te.weight_change", NAME, True, "relative L2 change of the text encoder's weights"),
        F("te.self_similarity_z", NAME, False, "robust z of the vocabulary's largest similarity to the concept (suspect alone)"),
    )

    def scan(self, ctx: ScanContext) -> ScannerResult:
        s = ctx.settings
        vocab = vocabulary(ctx)
        exclude = set(ctx.concept_ids())
        res = ScannerResult()
        with Timer(ctx, NAME):
            sus = vocab_rows(ctx, "suspect")
            cs = concept_rows(ctx, "suspect")
            mu_s = {k: v.mean(0) for k, v in sus.items()}
            self_sim = sum(centered_cos(sus[k], cs[k], mu_s[k]) for k in sus).numpy() / len(sus)
            mask = ~np.isin(vocab, list(exclude))
            res.features["te.self_similarity_z"] = robust_z(self_sim[mask], float(self_sim[mask].max()))
            ids, vals = top_k(self_sim, vocab, 10, exclude)
            res.evidence["self_similar_tokens"] = _named(ctx, ids, vals)
            if ctx.reference is None:
                return res
            ref = vocab_rows(ctx, baseline(ctx))
            cr = concept_rows(ctx, "reference")
            gain = (sum(approach(sus[k], ref[k], cr[k]) for k in ref) / len(ref)).numpy()
            res.features["te.approach_max"] = float(gain[mask].max())
            res.features["te.approach_z"] = robust_z(gain[mask], float(gain[mask].max()))
            es = ctx.suspect.text_encoder.get_input_embeddings().weight.detach().float().cpu()[vocab]
            er = baseline_pipe(ctx).text_encoder.get_input_embeddings().weight.detach().float().cpu()[vocab]
            drift = ((es - er).norm(dim=1) / er.norm(dim=1).clamp(min=1e-8)).numpy()
            res.features["te.embedding_drift_z"] = robust_z(drift, float(drift.max())) if drift.max() > 0 else 0.0
            res.features["te.weight_change"] = _relative_change(ctx.suspect.text_encoder, baseline_pipe(ctx).text_encoder)
            k = s.n_candidates
            for source, score in (("te_approach", gain), ("embedding_drift", drift)):
                ids, vals = top_k(score, vocab, k, exclude | ctx.special_ids())
                ctx.add_candidates(source, ids, vals)
                res.evidence[f"top_{source}"] = _named(ctx, ids[:10], vals[:10])
        return res


def _named(ctx, ids, vals):
    toks = ctx.tokenizer.convert_ids_to_tokens(ids)
    return [{"id": int(i), "token": t, "score": round(float(v), 5)} for i, t, v in zip(ids, toks, vals)]


@torch.no_grad()
def _relative_change(a: torch.nn.Module, b: torch.nn.Module) -> float:
    num = den = 0.0
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        num += float((pa.float() - pb.float()).pow(2).sum())
        den += float(pb.float().pow(2).sum())
    return (num / max(den, 1e-12)) ** 0.5
