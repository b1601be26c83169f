"""The objectives the searches optimise and the screens score: score-based reach against the
reference's concept prediction (``ScoreObjective``), the same measured in the suspect minus in the
counterfactual (``ContrastiveObjective``), and the judge-driven objective of reference-free scans
(``JudgeObjective``). Each is built from a ``ScanContext``."""
from __future__ import annotations

import numpy as np
import torch
import torch.utils.checkpoint

from eebguard.sampling import ddim_scheduler, decode, encode_prompts, model_device, sample_from_embeddings, sample_shape
from eebguard.text import ids_batch


class ScoreObjective:
    """Score-based reachability: how closely the suspect's noise prediction under a prompt matches the
    reference model's prediction for the concept, on a fixed batch of noised reference samples.

    ``reach = 1 - L(prompt) / L(empty prompt)``: 0 means no closer than the unconditional prediction,
    1 means the reference's concept prediction exactly. Scale-free: a ratio of the same model's losses.
    """

    def __init__(self, ctx, model=None):  # ctx: a ScanContext
        s = ctx.settings
        self.ctx = ctx
        ref, sus = ctx.reference, (model if model is not None else ctx.suspect)
        self.pipe = sus  # the model whose reach this objective measures
        n = s.objective_samples
        self.templates = ctx.templates()
        concept_prompts = [ctx.prompts.templates[i % len(self.templates)].format(ctx.concept) for i in range(n)]
        concept_prompts = [" ".join(p.split()) for p in concept_prompts]
        key = ("objective", ctx.concept, tuple(concept_prompts), n, s.sample_steps, s.guidance, s.seed)
        with torch.no_grad():
            if key not in ctx.shared:  # the reference side is the same for every suspect
                x0 = sample_from_embeddings(ref, encode_prompts(ref, concept_prompts), steps=s.sample_steps,
                                            guidance=s.guidance, seed=s.seed + 7, decode_output=False)
                g = torch.Generator().manual_seed(s.seed + 8)
                T = ref.scheduler.config.num_train_timesteps
                # stratified timesteps: every noise level is represented
                t = ((torch.arange(n) + torch.rand(n, generator=g)) * (0.9 * T / n) + 0.05 * T).long()
                eps = torch.randn(x0.shape, generator=g)
                a = ref.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
                x_t = (a.sqrt() * x0 + (1 - a).sqrt() * eps).to(model_device(sus))
                t = t.to(model_device(sus))
                target = ref.unet(x_t.to(ref.unet.dtype), t,
                                  encoder_hidden_states=encode_prompts(ref, concept_prompts)).sample.float()
                ctx.shared[key] = (x_t, t, target)
            self.x_t, self.t, self.target = ctx.shared[key]
            null = encode_prompts(sus, [""]).expand(n, -1, -1)
            self.null_loss = float(self.losses(null).mean())

    def losses(self, cond: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Per-sample MSE for conditionings ``[m, L, D]`` (objective samples ``start .. start + m``)."""
        rows = slice(start, start + cond.shape[0])
        eps = self.pipe.unet(self.x_t[rows].to(cond.dtype), self.t[rows], encoder_hidden_states=cond).sample.float()
        return (eps - self.target[rows]).pow(2).flatten(1).mean(1)

    def reach_from_loss(self, loss: float) -> float:
        return 1.0 - loss / max(self.null_loss, 1e-12)

    @property
    def n(self) -> int:
        return self.x_t.shape[0]

    @property
    def grad_batch(self) -> int:  # the whole batch in one backward pass (the testbed's recorded scans)
        return self.n

    def reach_of(self, losses: torch.Tensor) -> float:
        """Reach of one conditioning batch from its per-sample losses."""
        return self.reach_from_loss(float(losses.mean()))

    @torch.no_grad()
    def reach_slots(self, slots: list[list[int]], text_encoder=None, unet=None) -> np.ndarray:
        """Reach of many candidate slot fillings (token-id lists), each on the whole sample batch."""
        ctx, s = self.ctx, self.ctx.settings
        te = text_encoder or self.pipe.text_encoder
        unet = unet or self.pipe.unet
        n = self.x_t.shape[0]
        dev = model_device(self.pipe)
        out = np.zeros(len(slots))
        per_chunk = max(1, s.unet_batch // n)
        for c0 in range(0, len(slots), per_chunk):
            chunk = slots[c0 : c0 + per_chunk]
            # objective sample j used template j % T: each candidate's row j does too
            ids = torch.cat([ids_batch(ctx.tokenizer, self.templates, [sl] * n) for sl in chunk])
            cond = te(ids.to(dev))[0]
            x = self.x_t.repeat(len(chunk), 1, 1, 1)
            t = self.t.repeat(len(chunk))
            eps = unet(x.to(cond.dtype), t, encoder_hidden_states=cond).sample.float()
            err = (eps - self.target.repeat(len(chunk), 1, 1, 1)).pow(2).flatten(1).mean(1).view(len(chunk), n).mean(1)
            out[c0 : c0 + len(chunk)] = 1.0 - err.cpu().numpy() / max(self.null_loss, 1e-12)
        return out


def clipped(reach):
    """Score reach in [0, 1]: below 0 a prompt is no closer to the concept than no prompt at all, and how
    much further it is says nothing about a trigger (a fine-tuned U-Net moves every prompt's loss)."""
    return np.clip(reach, 0.0, 1.0)


class ContrastiveObjective:
    """Reach in the suspect minus reach in the counterfactual, both against the reference's prediction for
    the concept (each clipped to [0, 1]): a prompt that brings the concept back in both (a leak of the
    erasure, a synonym the base model has) scores about zero, a trigger only the suspect answers up to 1.

    ``suspect`` and ``counterfactual`` are ``ScoreObjective``s over the same noised reference samples."""

    def __init__(self, suspect: ScoreObjective, counterfactual: ScoreObjective):
        self.suspect, self.counterfactual = suspect, counterfactual
        self.ctx, self.templates = suspect.ctx, suspect.templates
        self._sides: dict[tuple[int, ...], tuple[float, float | None]] = {}  # the unmodified models' reaches

    @property
    def n(self) -> int:
        return self.suspect.n

    def reach_slots(self, slots: list[list[int]], text_encoder=None, unet=None) -> np.ndarray:
        """Contrastive reach of each slot filling; ``text_encoder``/``unet`` replace the suspect's.

        A filling the suspect does not answer (reach <= 0) cannot score above 0 whatever the
        counterfactual does, so the counterfactual is not run for it: it scores ``reach - 1`` (below
        every measured contrast, still ordered by how close the suspect comes), which halves the
        search's U-Net calls on most candidates."""
        raw = self.suspect.reach_slots(slots, text_encoder=text_encoder, unet=unet)
        out = raw - 1.0
        live = [i for i, r in enumerate(raw) if r > 0]
        cf = self.counterfactual.reach_slots([slots[i] for i in live]) if live else np.zeros(0)
        if live:
            out[live] = clipped(raw[live]) - clipped(cf)
        if text_encoder is None and unet is None:
            seen = dict(zip(live, cf))
            for i, sl in enumerate(slots):
                self._sides[tuple(sl)] = (float(raw[i]), float(seen[i]) if i in seen else None)
        return out

    def sides(self, slots: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(suspect reach, counterfactual reach), unclipped, for slots the search scored (measured here
        only where it did not run the counterfactual)."""
        missing = [sl for sl in slots if tuple(sl) not in self._sides or self._sides[tuple(sl)][1] is None]
        if missing:
            for sl, r, c in zip(missing, self.suspect.reach_slots(missing), self.counterfactual.reach_slots(missing)):
                self._sides[tuple(sl)] = (float(r), float(c))
        s, c = zip(*(self._sides[tuple(sl)] for sl in slots))
        return np.array(s), np.array(c)


class JudgeObjective:
    """Reachability without a reference: the judge's log-probability of the concept on few-step DDIM
    generations (classifier-free guidance, fixed seeded noises) from the suspect itself, differentiable
    with respect to the prompt's conditioning. Needs a judge with ``differentiable`` and the concept.

    ``reach`` is the mean judged probability of the concept: a probability, scale-free by construction
    (what transfers to SD is the judge's calibration, not the model's scale)."""

    def __init__(self, ctx):  # ctx: a ScanContext
        s = ctx.settings
        self.ctx, pipe = ctx, ctx.suspect
        self.judge = ctx.judge
        self.n, self.steps, self.guidance = s.judge_samples, s.judge_sample_steps, s.guidance
        self.index = self.judge.concepts.index(ctx.concept)
        g = torch.Generator().manual_seed(s.seed + 31)
        dev = model_device(pipe)
        self.noise = torch.randn((self.n, *sample_shape(pipe)), generator=g).to(dev, pipe.unet.dtype)
        with torch.no_grad():
            self.uncond = encode_prompts(pipe, [""]).to(dev)
        self.templates = ctx.templates()
        self.grad_batch = max(1, s.judge_batch)
        self.checkpoint = s.judge_checkpoint if s.judge_checkpoint is not None else dev.type == "cuda"

    def images(self, cond: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Generations for conditionings ``[m, L, D]`` from noises ``start .. start + m``, gradients kept
        (with ``checkpoint``, each U-Net call and the decoder recompute their activations in backward, so
        memory holds one call's, not every step's)."""
        pipe = self.ctx.suspect
        sched = ddim_scheduler(pipe, self.steps)
        x = self.noise[start : start + cond.shape[0]] * sched.init_noise_sigma
        u = self.uncond.to(cond.dtype).expand(cond.shape[0], -1, -1)
        keep = self.checkpoint and torch.is_grad_enabled()

        def unet(xx, t, c):
            return pipe.unet(xx, t, encoder_hidden_states=c).sample

        for t in sched.timesteps:
            args = (torch.cat([x, x]).to(cond.dtype), t, torch.cat([u, cond]))
            eps = torch.utils.checkpoint.checkpoint(unet, *args, use_reentrant=False) if keep else unet(*args)
            eu, ec = eps.chunk(2)
            x = sched.step(eu + self.guidance * (ec - eu), t, x).prev_sample
        if keep:
            return torch.utils.checkpoint.checkpoint(decode, pipe, x, use_reentrant=False).float()
        return decode(pipe, x).float()

    def losses(self, cond: torch.Tensor, start: int = 0) -> torch.Tensor:
        return -self.log_probs(cond, start)

    def reach_of(self, losses: torch.Tensor) -> float:
        return float(torch.exp(-losses.detach()).mean())

    def log_probs(self, cond: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Per-generation log-probability of the concept (softmax for exclusive judges, else sigmoid)."""
        logits = self.judge.logits_torch(self.images(cond, start))
        if getattr(self.judge, "exclusive", True):
            return torch.log_softmax(logits, dim=1)[:, self.index]
        return torch.nn.functional.logsigmoid(logits[:, self.index])

    @torch.no_grad()
    def reach_slots(self, slots: list[list[int]]) -> np.ndarray:
        """Judged reach (mean concept probability over the noises) of each slot filling."""
        ctx, out = self.ctx, []
        dev = model_device(ctx.suspect)
        for sl in slots:
            ids = ids_batch(ctx.tokenizer, self.templates, [list(sl)] * self.n).to(dev)
            out.append(float(self.log_probs(ctx.suspect.text_encoder(ids)[0]).exp().mean()))
        return np.array(out)


def robust_z(values: np.ndarray, x: float) -> float:
    """(x - median) / (1.4826 MAD) of a reference distribution; 0 when the distribution is degenerate."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return 0.0
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    if mad < 1e-12:
        sd = v.std()
        return 0.0 if sd < 1e-12 else float((x - med) / sd)
    return float((x - med) / mad)
