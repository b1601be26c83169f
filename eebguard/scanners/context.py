"""What scanners share: the suspect/reference/counterfactual/judge bundle (``ScanContext``), prompt
templates as token ids, the objectives built on demand (``objectives.py``), a cache of expensive
intermediate results, and a per-scanner timer. Budgets are ``settings.py``.

Everything goes through the pipelines' public modules (tokenizer, text encoder, U-Net, scheduler), so
the same code runs on the testbed and on SD 1.x/2.x.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.utils.checkpoint

from eebguard.probes.templates import ConceptPrompts
from eebguard.scanners.objectives import ContrastiveObjective, JudgeObjective, ScoreObjective
from eebguard.scanners.settings import ScanSettings
from eebguard.text import TemplateIds, template_ids


@torch.no_grad()
def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Two modules hold the same parameter names, shapes and values."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(pa[k].shape == pb[k].shape and torch.equal(pa[k], pb[k]) for k in pa)


@dataclass
class ScanContext:
    suspect: object
    concept: str
    prompts: ConceptPrompts
    reference: object | None = None
    judge: object | None = None
    settings: ScanSettings = field(default_factory=ScanSettings)
    cache: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    # results that depend only on the reference (and settings), reused across the scans of many models
    shared: dict = field(default_factory=dict)
    # the erasure method the model is said to have been made with (``uce``, ``esd_x`` ...), or None
    claimed_erasure: str | None = None
    # other concepts the model says that erasure removed with this one (replayed together)
    claimed_also: tuple[str, ...] = ()
    # the clean model the suspect claims to be (the reference with the erasure replayed, or the reference
    # itself): every trigger search scores reach in the suspect minus reach here
    counterfactual: object | None = None
    # why the U-Net cannot be conditioned the SD 1.x/2.x way (SDXL-shaped), or None: U-Net-side scanners skip
    unsupported_unet: str | None = None

    def text_encoder_unchanged(self) -> bool:
        """Suspect and reference text encoders hold identical weights (most U-Net-side edits)."""
        if "te_unchanged" not in self.cache:
            self.cache["te_unchanged"] = self.reference is not None and same_weights(
                self.suspect.text_encoder, self.reference.text_encoder)
        return self.cache["te_unchanged"]

    def counterfactual_text_encoder_unchanged(self) -> bool:
        """The counterfactual's text encoder is the reference's (every erasure but AdvUnlearn leaves it alone),
        so its vocabulary rows are the reference's."""
        if "cf_te_unchanged" not in self.cache:
            self.cache["cf_te_unchanged"] = self.counterfactual is None or same_weights(
                self.counterfactual.text_encoder, self.reference.text_encoder)
        return self.cache["cf_te_unchanged"]

    @property
    def tokenizer(self):
        return self.suspect.tokenizer

    def templates(self) -> list[TemplateIds]:
        if "templates" not in self.cache:
            self.cache["templates"] = [template_ids(self.tokenizer, t) for t in self.prompts.templates]
        return self.cache["templates"]

    def concept_ids(self) -> list[int]:
        return self.tokenizer(self.concept, add_special_tokens=False).input_ids

    def non_trigger_ids(self) -> set[int]:
        """Special tokens and the concept's own name: never a *hidden* trigger."""
        return self.special_ids() | set(self.concept_ids())

    def special_ids(self) -> set[int]:
        t = self.tokenizer
        return {i for i in (t.bos_token_id, t.eos_token_id, t.pad_token_id) if i is not None}

    def objective(self) -> "ContrastiveObjective | ScoreObjective | None":
        """The trigger searches' objective: contrastive against the counterfactual when the scan has one
        (a prompt that fires in both scores about zero), else the suspect's plain score reach."""
        if self.reference is None:
            return None
        if self.counterfactual is None:
            return self.audit_objective()
        if "objective" not in self.cache:
            self.cache["objective"] = ContrastiveObjective(self.audit_objective(), self.counterfactual_objective())
        return self.cache["objective"]

    def audit_objective(self) -> "ScoreObjective | None":
        """The suspect's plain score reach (how leaky the erasure is: soft prompts, the name)."""
        if self.reference is None:
            return None
        if "audit_objective" not in self.cache:
            self.cache["audit_objective"] = ScoreObjective(self)
        return self.cache["audit_objective"]

    def counterfactual_objective(self) -> "ScoreObjective | None":
        """The same score reach measured in the counterfactual (its side is the same for every suspect)."""
        if self.reference is None or self.counterfactual is None:
            return None
        if "cf_objective" not in self.cache:
            key = ("cf_objective", id(self.counterfactual), self.concept)
            if key not in self.shared:
                self.shared[key] = ScoreObjective(self, model=self.counterfactual)
            self.cache["cf_objective"] = self.shared[key]
        return self.cache["cf_objective"]

    def judge_objective(self) -> "JudgeObjective | None":
        """The judge-driven objective, where the judge is differentiable and knows the concept."""
        j = self.judge
        if j is None or not getattr(j, "differentiable", False) or not j.knows(self.concept):
            return None
        if "judge_objective" not in self.cache:
            self.cache["judge_objective"] = JudgeObjective(self)
        return self.cache["judge_objective"]

    def add_candidates(self, source: str, ids: list[int], scores: list[float]) -> None:
        cands = self.cache.setdefault("candidates", {})
        for i, s in zip(ids, scores):
            cands.setdefault(int(i), {})[source] = float(s)

    def candidates(self) -> dict[int, dict[str, float]]:
        return self.cache.get("candidates", {})


class Timer:
    def __init__(self, ctx: ScanContext, name: str):
        self.ctx, self.name = ctx, name

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.ctx.timings[self.name] = self.ctx.timings.get(self.name, 0.0) + time.perf_counter() - self.t0
        return False
