"""The counterfactual: the clean model a suspect claims to be.

A model that says "I am the base with concept C erased by method M" should behave like the base with C
erased by M. The counterfactual is that model, rebuilt here: the reference with the claimed erasure
replayed (its published defaults, the replay's own seed), and, for the closed-form methods, its
hyperparameters then fitted to the suspect's weights (a defender may have tuned the method: a weaker or
stronger edit leaves other leaks than the defaults'). Without a claim the scan picks the method
itself: each candidate erasure is replayed and the one whose weight change best explains the suspect's
on the parameters it touches is kept (``fit``, a cosine). When nothing fits, the un-erased reference is
the counterfactual; it is always the second witness.

Every trigger search scores reach in the suspect minus reach in the counterfactual, so a prompt that
the erasure itself leaves open (a leak) scores about zero, and a demonstrated trigger fires in the
suspect and not here.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

#: erasures the scan replays by itself when the model claims none (closed forms and MACE: seconds on the
#: testbed); the training methods join with ``replay_trained``
CHEAP_METHODS = ("uce", "rece", "mace")
TRAINED_METHODS = ("esd_x", "esd_u", "advunlearn")
#: below this cosine no replayed method explains the suspect's change: the reference is the counterfactual
MIN_FIT = 0.5
#: the hyperparameter fit: a pattern search in log2 of each ``fit_space`` factor, from the defaults, with
#: steps 1, 1/2, 1/4 (factors 2, 1.41, 1.19) and at most this many replays
MAX_FIT_REPLAYS = 24
FIT_STEPS = (1.0, 0.5, 0.25)
#: a fitted setting replaces the defaults only when it explains this much more of the suspect's change: on a
#: planted model the attack's own change pulls the fit (the shallow `four-shallow-s5-uce`, erased at the
#: defaults, fitted 1.68 / 2.0 for +0.009), a tuned defender's UCE gains +0.087
MIN_FIT_GAIN = 0.02


@dataclass
class Counterfactual:
    """``kind``: "replay" (the reference with ``method`` replayed) or "reference" (the reference itself).
    ``fit``: cosine between the suspect's and the replay's weight changes (from the reference) on the
    parameters the replay changes; ``explained``: the share of the suspect's change there that the replay
    accounts for (1 - |d_s - d_r|^2 / |d_s|^2). ``candidates``: every method tried, with its fit."""

    kind: str
    method: str | None
    pipe: object = field(repr=False)
    fit: float | None = None
    explained: float | None = None
    claimed: bool = False
    also: tuple[str, ...] = ()
    candidates: list[dict] = field(default_factory=list)
    reason: str | None = None
    seconds: float = 0.0
    params: dict = field(default_factory=dict)  # hyperparameters fitted away from the method's defaults
    default_explained: float | None = None  # the defaults' explained share, before the fit

    def to_json(self) -> dict:
        return {"kind": self.kind, "method": self.method, "fit": self.fit, "explained": self.explained,
                "claimed": self.claimed, "also_erased": list(self.also), "candidates": self.candidates,
                "reason": self.reason, "seconds": round(self.seconds, 3), "params": self.params,
                "default_explained": self.default_explained}


@torch.no_grad()
def weight_fit(suspect, reference, replayed) -> tuple[float, float]:
    """(cosine, explained share) of the suspect's change against the replay's, both from the reference,
    over the parameters (text encoder and U-Net) the replay changed. (0, 0) when it changed none."""
    dot = ss = rr = res = 0.0
    for comp in ("text_encoder", "unet"):
        s = dict(getattr(suspect, comp).named_parameters())
        r = dict(getattr(reference, comp).named_parameters())
        for name, p in getattr(replayed, comp).named_parameters():
            if name not in s or name not in r or s[name].shape != p.shape:
                continue
            base = r[name].float()
            dr = p.float() - base
            if not torch.any(dr):
                continue
            ds = s[name].float() - base
            dot += float((ds * dr).sum())
            ss += float(ds.pow(2).sum())
            rr += float(dr.pow(2).sum())
            res += float((ds - dr).pow(2).sum())
    if rr == 0.0 or ss == 0.0:
        return 0.0, 0.0
    return dot / (ss * rr) ** 0.5, 1.0 - res / ss


def build_counterfactual(suspect, reference, concept: str, *, claimed: str | None = None,
                         also: Sequence[str] = (), shared: dict | None = None, device: str = "cpu",
                         replay_trained: bool = False, methods: Sequence[str] | None = None,
                         fit_params: bool = True) -> Counterfactual:
    """The counterfactual for ``suspect``: the claimed erasure replayed, else the best-fitting of
    ``methods`` (default: the cheap ones, plus the trained ones with ``replay_trained``), else the
    reference. With ``fit_params`` a method with a ``fit_space`` then has its hyperparameters fitted
    to the suspect's weights (``_fit_hyperparameters``). Default replays are kept in ``shared`` for later
    scans; a fitted one belongs to its suspect.

    Examples
    --------
    >>> cf = build_counterfactual(suspect, reference, "seven", claimed="uce")   # doctest: +SKIP
    >>> cf.kind, cf.method, round(cf.fit, 3)                                     # doctest: +SKIP
    ('replay', 'uce', 1.0)
    """
    from eebguard.erasure.replay import shared_erased_copy

    shared = {} if shared is None else shared
    t0 = time.perf_counter()
    if claimed is not None:
        pipe = shared_erased_copy(shared, reference, concept, claimed, device=device, also=tuple(also))
        fit, explained = weight_fit(suspect, reference, pipe)
        cf = Counterfactual("replay", claimed, pipe, round(fit, 5), round(explained, 5), claimed=True,
                            also=tuple(also), candidates=[{"method": claimed, "fit": round(fit, 5)}])
        if fit_params:
            _fit_hyperparameters(cf, suspect, reference, concept, device)
        cf.seconds = time.perf_counter() - t0
        return cf
    tried = list(methods) if methods is not None else [*CHEAP_METHODS, *(TRAINED_METHODS if replay_trained else ())]
    candidates, best = [], None
    for m in tried:
        pipe = shared_erased_copy(shared, reference, concept, m, device=device)
        fit, explained = weight_fit(suspect, reference, pipe)
        candidates.append({"method": m, "fit": round(fit, 5), "explained": round(explained, 5)})
        if best is None or fit > best[1]:
            best = (m, fit, explained, pipe)
    if best is not None and best[1] >= MIN_FIT:
        m, fit, explained, pipe = best
        cf = Counterfactual("replay", m, pipe, round(fit, 5), round(explained, 5), candidates=candidates)
        if fit_params:
            _fit_hyperparameters(cf, suspect, reference, concept, device)
        cf.seconds = time.perf_counter() - t0
        return cf
    why = (f"no replayed erasure explains the suspect's change (best fit "
           f"{best[1]:.2f} < {MIN_FIT})" if best is not None else "no erasure method to replay")
    return Counterfactual("reference", None, reference, candidates=candidates, reason=why,
                          seconds=time.perf_counter() - t0)


def _fit_hyperparameters(cf: Counterfactual, suspect, reference, concept: str, device: str) -> None:
    """Move ``cf`` to the hyperparameters of its method that best explain the suspect's weight change
    (largest ``explained``: unlike the cosine it sees the edit's strength), by a pattern search in log2
    of each ``fit_space`` factor on the defaults. Leaves ``cf`` at the defaults unless the best setting
    explains at least ``MIN_FIT_GAIN`` more."""
    from eebguard.erasure import ERASURES
    from eebguard.erasure.replay import erased_copy

    cls = ERASURES.get(cf.method)
    space = dict(getattr(cls, "fit_space", {}) or {})
    if not space or cf.explained is None:
        return
    names = sorted(space)
    bounds = {n: (math.log2(space[n][0]), math.log2(space[n][1])) for n in names}
    cf.default_explained = cf.explained
    seen: dict[tuple, tuple] = {tuple(0.0 for _ in names): (cf.explained, cf.fit)}
    here, replays, best_pipe = tuple(0.0 for _ in names), 0, {}  # only the best replay is kept (memory)

    def params_of(point):
        return {n: cls.defaults[n] * 2.0 ** x for n, x in zip(names, point)}

    for step in FIT_STEPS:
        moved = True
        while moved and replays < MAX_FIT_REPLAYS:
            moved = False
            for i, n in enumerate(names):
                for sign in (1.0, -1.0):
                    point = tuple(round(x + sign * step * (j == i), 4) for j, x in enumerate(here))
                    lo, hi = bounds[n]
                    if point in seen or not lo - 1e-9 <= point[i] <= hi + 1e-9 or replays >= MAX_FIT_REPLAYS:
                        continue
                    pipe = erased_copy(reference, concept, cf.method, also=cf.also, device=device, params=params_of(point))
                    replays += 1
                    fit, explained = weight_fit(suspect, reference, pipe)
                    seen[point] = (explained, fit)
                    if explained > max(v[0] for p, v in seen.items() if p != point):
                        best_pipe = {point: pipe}
            best = max(seen, key=lambda p: seen[p][0])
            if seen[best][0] > seen[here][0] + 1e-6:
                here, moved = best, True
    explained, fit = seen[here]
    pipe = best_pipe.get(here) if explained >= cf.explained + MIN_FIT_GAIN else None
    cf.candidates.append({"method": cf.method, "fitted_replays": replays, "explained": round(explained, 5),
                          "params": {k: round(v, 5) for k, v in params_of(here).items()}, "kept": pipe is not None})
    if pipe is None:
        return
    cf.pipe, cf.fit, cf.explained = pipe, round(fit, 5), round(explained, 5)
    cf.params = {k: round(v, 5) for k, v in params_of(here).items()}


def reference_counterfactual(reference, reason: str) -> Counterfactual:
    return Counterfactual("reference", None, reference, reason=reason)
