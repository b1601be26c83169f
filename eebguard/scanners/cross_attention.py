"""Cross-attention scanners: the cheap white-box K/V projection check over the whole vocabulary, and
T2IShield-style assimilation features of attention maps captured through attention processors."""
from __future__ import annotations

import numpy as np
import torch

from eebguard.attention import CrossAttentionRecorder, attn2_modules
from eebguard.sampling import ddim_scheduler, encode_prompts, model_device, sample_shape
from eebguard.scanners.base import SCANNERS, F, Scanner, ScannerResult
from eebguard.scanners.context import ScanContext, Timer
from eebguard.text import ids_batch
from eebguard.scanners.objectives import robust_z
from eebguard.scanners.vocab import approach, baseline, baseline_pipe, concept_rows, top_k, vocab_rows, vocabulary

KV = "cross_attention_kv"
MAPS = "attention_maps"


@SCANNERS.register
class CrossAttentionKVScanner(Scanner):
    """Project every vocabulary token's encoding through each attn2 to_k/to_v, suspect vs counterfactual
    (the reference when the scan has none), and score how far each token's keys/values moved toward the
    concept's *reference* keys/values beyond the counterfactual's.

    approach_l(v) = log(|W_b E_b(v) - W_r E_r(c)| / |W_s E_s(v) - W_r E_r(c)|), averaged over K and V and
    the slot/EOS rows. Needs the reference: an erased model no longer knows where the concept's keys were.
    """

    name = KV
    order = 20
    needs_reference = True
    features = (
        F("kv.approach_z", KV, True, "robust z of the largest mean K/V approach toward the concept over the vocabulary"),
        F("kv.approach_max", KV, True, "largest mean K/V approach toward the concept (log distance ratio)"),
        F("kv.layer_approach_max", KV, True, "largest single-layer K/V approach of any token"),
        F("kv.name_retention", KV, True, "cosine of the concept name's K/V, suspect vs reference (erasure depth)"),
        F("kv.weight_change", KV, True, "relative L2 change of all attn2 to_k/to_v weights"),
    )

    @torch.no_grad()
    def scan(self, ctx: ScanContext) -> ScannerResult:
        res = ScannerResult()
        vocab = vocabulary(ctx)
        exclude = set(ctx.concept_ids())
        mask = ~np.isin(vocab, list(exclude))
        with Timer(ctx, KV):
            cs, cr = concept_rows(ctx, "suspect"), concept_rows(ctx, "reference")
            total, per_layer = kv_screen(ctx)
            total = total.numpy()
            retention, num, den = [], 0.0, 0.0
            base = attn2_modules(baseline_pipe(ctx).unet)
            for (_, a_s), (_, a_r), (_, a_b) in zip(attn2_modules(ctx.suspect.unet), attn2_modules(ctx.reference.unet), base):
                for proj in ("to_k", "to_v"):
                    Ws = getattr(a_s, proj).weight.detach().float().cpu()
                    Wr = getattr(a_r, proj).weight.detach().float().cpu()
                    Wb = getattr(a_b, proj).weight.detach().float().cpu()
                    num += float((Ws - Wb).pow(2).sum())
                    den += float(Wb.pow(2).sum())
                    for row in ("slot", "eos"):
                        kc = cr[row] @ Wr.T
                        retention.append(float(torch.nn.functional.cosine_similarity(cs[row] @ Ws.T, kc, dim=0)))
            res.features["kv.approach_max"] = float(total[mask].max())
            res.features["kv.approach_z"] = robust_z(total[mask], float(total[mask].max()))
            layer_max = {n: float(g.numpy()[mask].max()) for n, g in per_layer.items()}
            res.features["kv.layer_approach_max"] = max(layer_max.values())
            res.features["kv.name_retention"] = float(np.mean(retention))
            res.features["kv.weight_change"] = (num / max(den, 1e-12)) ** 0.5
            ids, vals = top_k(total, vocab, ctx.settings.n_candidates, exclude | ctx.special_ids())
            ctx.add_candidates("kv_approach", ids, vals)
            toks = ctx.tokenizer.convert_ids_to_tokens(ids[:10])
            res.evidence["top_kv_approach"] = [{"id": i, "token": t, "score": round(v, 5)} for i, t, v in zip(ids, toks, vals)]
            res.evidence["per_layer_approach_max"] = {n: round(v, 5) for n, v in layer_max.items()}
        return res


def kv_screen(ctx: ScanContext, prefix: tuple[int, ...] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scanner's screen: every vocabulary token's K/V approach beyond the counterfactual's (the
    reference's without one), placed behind ``prefix`` in the slot (a partial trigger; none: the token
    alone), ``([V], {layer: [V]})``."""
    return kv_approach(ctx.suspect.unet, baseline_pipe(ctx).unet, vocab_rows(ctx, "suspect", prefix),
                       vocab_rows(ctx, baseline(ctx), prefix), concept_rows(ctx, "reference"),
                       target_unet=ctx.reference.unet)


@torch.no_grad()
def kv_approach(suspect_unet, reference_unet, rows_s: dict, rows_r: dict, concept_r: dict,
                target_unet=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean approach of every vocabulary row's attn2 keys/values toward the concept's reference keys/values
    (each layer: K and V, token and EOS rows): ``([V], {layer: [V]})``. The concept's keys/values are
    projected by ``target_unet`` (default the reference)."""
    per_layer = {}
    target = attn2_modules(target_unet or reference_unet)
    for (name, a_s), (_, a_r), (_, a_t) in zip(attn2_modules(suspect_unet), attn2_modules(reference_unet), target):
        layer = torch.zeros(len(rows_r["slot"]))
        for proj in ("to_k", "to_v"):
            Ws, Wr, Wt = (getattr(a, proj).weight.detach().float().cpu() for a in (a_s, a_r, a_t))
            for row in ("slot", "eos"):
                layer += _chunked_approach(rows_s[row], rows_r[row], Ws, Wr, concept_r[row] @ Wt.T)
        per_layer[name] = layer / 4
    total = torch.zeros(len(rows_r["slot"]))
    for layer in per_layer.values():
        total += layer
    return total / len(per_layer), per_layer


def _chunked_approach(rows_s, rows_r, Ws, Wr, kc, chunk: int = 8192) -> torch.Tensor:
    """Approach of every vocabulary row for one projection, in chunks (bounded memory on SD-sized layers)."""
    return torch.cat([approach(rows_s[i : i + chunk] @ Ws.T, rows_r[i : i + chunk] @ Wr.T, kc)
                      for i in range(0, len(rows_r), chunk)])


def ftt(maps: torch.Tensor, n_tokens: int) -> float:
    """T2IShield's Frobenius-norm statistic for one prompt: maps ``[L, r, r]`` (BOS first), each scaled by
    its own max; F = 1/(n-1) sum_{i=1}^{n-1} |M_i - mean_{i<=n} M_i|_F over the prompt's n tokens. Low F means
    the maps assimilate (a trigger dominates every token)."""
    m = maps[1 : n_tokens + 1].float()
    m = m / m.flatten(1).amax(1).clamp(min=1e-8)[:, None, None]
    mean = m.mean(0)
    return float((m[: n_tokens - 1] - mean).flatten(1).norm(dim=1).sum() / max(n_tokens - 1, 1))


@torch.no_grad()
def prompt_maps(ctx: ScanContext, ids: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """Head-, layer- and step-averaged 16x16 attn2 maps ``[B, L, 16, 16]`` of the conditional branch
    along a short guided DDIM trajectory (T2IShield records them during generation)."""
    pipe, s = ctx.suspect, ctx.settings
    dev = model_device(pipe)
    cond = pipe.text_encoder(ids.to(dev))[0]
    uncond = encode_prompts(pipe, [""]).expand(len(ids), -1, -1)
    sched = ddim_scheduler(pipe, s.map_steps if steps is None else steps)
    g = torch.Generator().manual_seed(s.seed + 13)
    x = torch.randn((len(ids), *sample_shape(pipe)), generator=g).to(dev, cond.dtype) * sched.init_noise_sigma
    rec = CrossAttentionRecorder(pipe.unet)
    for t in sched.timesteps:
        with rec:  # record the conditional pass only
            ec = pipe.unet(x, t, encoder_hidden_states=cond).sample
        eu = pipe.unet(x, t, encoder_hidden_states=uncond).sample
        x = sched.step(eu + s.guidance * (ec - eu), t, x).prev_sample
    return rec.mean_maps()


@SCANNERS.register
class AttentionMapScanner(Scanner):
    """T2IShield-style assimilation: FTT of cross-attention maps under the recovered trigger (or the top
    screening candidate), relative to the concept name and to retained-concept prompts of the same model."""

    name = MAPS
    order = 45
    features = (
        F("attn.ftt_trigger_ratio", MAPS, True, "FTT of trigger prompts / median FTT of control prompts (low: assimilation)"),
        F("attn.ftt_name_ratio", MAPS, False, "FTT of concept-name prompts / median FTT of control prompts"),
        F("attn.eos_share_trigger", MAPS, True, "share of attention mass on EOS/padding under the trigger, over controls"),
    )

    @torch.no_grad()
    def scan(self, ctx: ScanContext) -> ScannerResult:
        res = ScannerResult()
        with Timer(ctx, MAPS):
            tpls = ctx.templates()[: min(4, len(ctx.templates()))]
            trig = (ctx.cache.get("triggers") or [{}])[0].get("ids")
            if trig is None:
                cands = ctx.candidates()
                trig = [max(cands, key=lambda i: max(cands[i].values()))] if cands else None
            controls = [ctx.tokenizer(w, add_special_tokens=False).input_ids for w in list(ctx.prompts.retain)[:3]]
            sets = {"name": ctx.concept_ids(), **{f"control{i}": c for i, c in enumerate(controls) if c}}
            if trig:
                sets["trigger"] = list(trig)
            stats = {}
            for key, slot in sets.items():
                ids = ids_batch(ctx.tokenizer, tpls, [slot] * len(tpls))
                maps = prompt_maps(ctx, ids)
                f, eos = [], []
                for b in range(len(ids)):
                    n = int((ids[b] != ctx.tokenizer.eos_token_id).sum()) + 1  # BOS..EOS
                    f.append(ftt(maps[b], n))
                    mass = maps[b].flatten(1).sum(1)
                    eos.append(float(mass[n - 1 :].sum() / mass[1:].sum().clamp(min=1e-8)))
                stats[key] = (float(np.mean(f)), float(np.mean(eos)))
            ctl = [v for k, v in stats.items() if k.startswith("control")]
            if not ctl:
                res.skipped = "no control prompts"
                return res
            f_ctl = float(np.median([c[0] for c in ctl]))
            e_ctl = float(np.median([c[1] for c in ctl]))
            res.features["attn.ftt_name_ratio"] = stats["name"][0] / max(f_ctl, 1e-8)
            if "trigger" in stats:
                res.features["attn.ftt_trigger_ratio"] = stats["trigger"][0] / max(f_ctl, 1e-8)
                res.features["attn.eos_share_trigger"] = stats["trigger"][1] / max(e_ctl, 1e-8)
            res.evidence["ftt"] = {k: round(v[0], 4) for k, v in stats.items()}
            if "trigger" in sets:
                ids = ids_batch(ctx.tokenizer, tpls[:1], [sets["trigger"]])
                name_ids = ids_batch(ctx.tokenizer, tpls[:1], [sets["name"]])
                res.evidence["maps"] = {"trigger": prompt_maps(ctx, ids)[0, :8].numpy().round(4).tolist(),
                                        "name": prompt_maps(ctx, name_ids)[0, :8].numpy().round(4).tolist()}
        return res
