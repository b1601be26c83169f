"""Attribution: which tokens of a triggering prompt carry the concept (captum LayerIntegratedGradients
over the text encoder's token embeddings, attributing the score-based reach)."""
from __future__ import annotations

import numpy as np
import torch

from eebguard.sampling import model_device
from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.context import ScanContext, Timer
from eebguard.text import ids_batch, pad_id

NAME = "attribution"


@SCANNERS.register
class AttributionScanner(Scanner):
    """Integrated gradients of the trigger prompt's reach with respect to each token's embedding
    (baseline: every token after BOS replaced by padding, so template words and trigger compete for the
    reach). Reports the share of attribution on the trigger tokens.

    Until 2026-11-29 the baseline padded only the trigger's slot; integrated gradients then give exactly
    zero to every token that equals its baseline, so the share was 1 by construction. Rows recorded with
    that baseline are recognised by their evidence and the feature is dropped from them
    (``eebguard.lab.zoo.scan.upgrade_row``)."""

    name = NAME
    order = 50
    needs_reference = True
    needs_trigger = True
    features = (
        F("attr.trigger_share", NAME, True, "share of |attribution| on the trigger tokens among the prompt's tokens"),
    )

    def scan(self, ctx: ScanContext) -> ScannerResult:
        from captum.attr import LayerIntegratedGradients

        res = ScannerResult()
        triggers = ctx.cache["triggers"]
        with Timer(ctx, NAME):
            obj = ctx.audit_objective()
            pipe = ctx.suspect
            dev = model_device(pipe)
            seq = list(triggers[0]["ids"])
            n = min(8, obj.x_t.shape[0])
            ids = ids_batch(ctx.tokenizer, obj.templates, [seq] * n).to(dev)
            starts = [obj.templates[j % len(obj.templates)].slot_start() for j in range(n)]
            base = torch.full_like(ids, pad_id(ctx.tokenizer))
            base[:, 0] = ids[:, 0]  # BOS stays: every prompt starts with it
            null = max(obj.null_loss, 1e-12)

            def forward(input_ids, x_t, t, target):
                cond = pipe.text_encoder(input_ids)[0]
                eps = pipe.unet(x_t, t, encoder_hidden_states=cond).sample.float()
                return 1 - (eps - target).pow(2).flatten(1).mean(1) / null

            lig = LayerIntegratedGradients(forward, pipe.text_encoder.get_input_embeddings())
            attr = lig.attribute(ids, baselines=base, additional_forward_args=(obj.x_t[:n], obj.t[:n], obj.target[:n]),
                                 n_steps=12, internal_batch_size=96)
            per_token = attr.sum(-1).abs().detach().cpu().numpy()  # [n, L]
            shares, rows = [], []
            for j, s0 in enumerate(starts):
                eos = int((ids[j] == ctx.tokenizer.eos_token_id).nonzero()[0])
                tot = per_token[j, 1 : eos + 1].sum()
                shares.append(per_token[j, s0 : s0 + len(seq)].sum() / max(tot, 1e-12))
                rows.append(per_token[j, : eos + 1] / max(tot, 1e-12))
            res.features["attr.trigger_share"] = float(np.mean(shares))
            toks = ctx.tokenizer.convert_ids_to_tokens(ids[0].tolist())
            eos0 = int((ids[0] == ctx.tokenizer.eos_token_id).nonzero()[0])
            res.evidence["tokens"] = [{"token": t, "share": round(float(v), 4)} for t, v in zip(toks[: eos0 + 1], rows[0])]
        return res
