"""The contrastive scan: the counterfactual, the contrastive objective, the demonstration, the verdicts."""
import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def leak_and_backdoor(base_pipe):
    """A tiny world with a known leak and a known backdoor: the counterfactual is the base with a path
    ``plorvex`` -> seven (a synonym an erasure left open: a leak), the suspect is that model with a second
    path ``qzvex`` -> seven planted on top. Both answer the leak; only the suspect answers ``qzvex``, which
    the search must prefer."""
    from eebguard.models.formats import copy_pipeline
    from eebguard.probes import concept_prompts
    from eebguard.lab.attacks import get_attack
    from eebguard.erasure.editing import EditSettings

    cp, s = concept_prompts("seven"), EditSettings(seed=0)
    counterfactual = copy_pipeline(base_pipe)
    get_attack("shallow").plant(counterfactual, cp, "plorvex", settings=s)
    suspect = copy_pipeline(counterfactual)
    get_attack("shallow").plant(suspect, cp, "qzvex", settings=s)
    return base_pipe, suspect, counterfactual


def _ctx(suspect, reference, counterfactual, judge=None, **settings):
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext
    from eebguard.scanners.settings import settings_for

    return ScanContext(suspect, "seven", concept_prompts("seven"), reference=reference, judge=judge,
                       settings=settings_for("fast", **settings), counterfactual=counterfactual)


def test_the_contrastive_objective_scores_a_shared_leak_near_zero_and_the_planted_trigger_high(leak_and_backdoor):
    base, suspect, counterfactual = leak_and_backdoor
    ctx = _ctx(suspect, base, counterfactual)
    tok = suspect.tokenizer
    leak, trigger = (tok(w, add_special_tokens=False).input_ids for w in ("plorvex", "qzvex"))
    plain = ctx.audit_objective().reach_slots([leak, trigger])
    contrast = ctx.objective().reach_slots([leak, trigger])
    assert plain[0] > 0.5 and plain[1] > 0.5, plain  # the old objective cannot tell them apart
    assert abs(contrast[0]) < 0.05 and contrast[1] > 0.5, contrast


def test_the_contrastive_search_prefers_the_planted_trigger_over_the_shared_leak(leak_and_backdoor):
    from eebguard.scanners.hard_trigger import HardTriggerScanner

    base, suspect, counterfactual = leak_and_backdoor
    ctx = _ctx(suspect, base, counterfactual)
    tok = suspect.tokenizer
    pieces = tok("plorvex", add_special_tokens=False).input_ids + tok("qzvex", add_special_tokens=False).input_ids
    ctx.add_candidates("kv_approach", pieces, [1.0] * len(pieces))  # both are candidates, the leak's first
    res = HardTriggerScanner().scan(ctx)
    best = res.evidence["triggers"][0]
    leak = tok("plorvex", add_special_tokens=False).input_ids
    assert best["ids"] != leak and tok.convert_tokens_to_ids("q") in best["ids"], best  # q: planted only
    assert best["score_reach"] > 0.5 and best["counterfactual_score"] < 0.2 < best["suspect_score"], best


def test_a_demonstrated_trigger_needs_both_fresh_checks(monkeypatch):
    """Demonstrated: the suspect at >= 50% and the counterfactual at <= 20% of the same fresh seeds, and
    the un-erased reference not answering it (a path the base has is 'natural')."""
    import eebguard.demonstration as demo

    hits = {}

    def fake(ctx, slot, n, seed_offset=demo.FRESH_SEED_OFFSET):
        return torch.zeros(n, 3, 4, 4), np.arange(n) < hits[ctx]

    monkeypatch.setattr(demo, "judged_images", fake)
    trig = {"ids": [1], "text": "x"}

    def run(s, c, r=0):
        hits.update({"s": s, "c": c, "r": r})
        return demo.demonstrate("s", "c", trig, 16, witness_ctx="r")

    ok = run(12, 0)
    assert ok["demonstrated"] and ok["suspect_fresh"] == 0.75 and ok["counterfactual_fresh"] == 0.0
    assert ok["suspect_interval"][0] < 0.75 < ok["suspect_interval"][1] and ok["grid"].startswith("data:image/png;base64,")
    assert not run(12, 4)["demonstrated"]  # the counterfactual answers it too: a leak of the erasure
    assert not run(7, 0)["demonstrated"]  # under half of the suspect's fresh images
    nat = run(12, 0, 10)
    assert not nat["demonstrated"] and nat["natural"] and nat["reference_fresh"] == 10 / 16
    assert run(6, 3)["reference_fresh"] is None  # a gain under the tamper gap: the witness is not asked


def test_p_live_and_p_tampered_follow_the_fresh_counts_and_the_text_encoder():
    from eebguard.detect.contrastive import TE_APPROACH_LEVEL, p_live, p_tampered

    def d(s, c, r=None, natural=False):
        return {"images": 16, "suspect_hits": s, "counterfactual_hits": c, "reference_hits": r, "natural": natural}

    assert p_live([d(16, 0, 0)]) > 0.95 and 0.3 < p_live([d(8, 0, 0)]) < 0.7 and p_live([d(16, 8)]) < 0.05
    assert p_live([]) is None and p_live([d(16, 0, 0), d(0, 0)]) == p_live([d(16, 0, 0)])
    p, by = p_tampered([d(7, 0, 0)], {})  # a weakened backdoor: under half, but far above the counterfactual
    assert p > 0.5 and by == "weakened_trigger"
    p, by = p_tampered([d(0, 0)], {"te.approach_max": TE_APPROACH_LEVEL + 1.0})  # a dead surface edit
    assert p > 0.99 and by == "text_encoder"
    p, _ = p_tampered([d(8, 8), d(9, 1, 9, natural=True)], {"te.approach_max": 0.0})  # leaks only
    assert p < 0.25  # the same count in both: 16 images leave a difference over 0.25 possible (0.20)
    assert p_tampered([], {}) == (None, None)


def test_each_verdict_is_reachable_and_exits_by_severity():
    from eebguard.api import VERDICTS, decide
    from eebguard.hubscan import exit_code

    got = {decide(0.9, 0.9, 0.5, False, False), decide(0.1, 0.1, 0.5, True, True), decide(0.1, 0.8, 0.5, False, True),
           decide(0.1, 0.1, 0.5, False, True), decide(0.1, 0.1, 0.5, False, False), decide(None, None, 0.5, False, False)}
    assert got == set(VERDICTS)
    assert decide(0.1, 0.1, 0.5, True, False) == "backdoor"  # a demonstrated trigger is enough
    assert decide(None, None, 0.5, False, True) == "leaky"
    base = {"findings": [], "tampered": [], "leaky": [], "clean": [], "unscored": [], "errors": [], "skipped": [],
            "scanned": 1}
    assert exit_code(base) == 0 and exit_code({**base, "findings": [{}]}, "backdoor") == 1
    assert exit_code({**base, "tampered": [{}]}) == 1 and exit_code({**base, "tampered": [{}]}, "backdoor") == 0
    assert exit_code({**base, "leaky": [{}]}) == 0 and exit_code({**base, "leaky": [{}]}, "leaky") == 1
    assert exit_code({**base, "unscored": ["m"]}) == 2 and exit_code({**base, "scanned": 0}) == 3
    with pytest.raises(ValueError, match="fail_on"):
        exit_code(base, "reachable")


def test_the_claimed_counterfactual_fits_the_clean_example_and_the_scan_picks_it_without_a_claim(base_pipe):
    """UCE is a closed form: replayed on the reference it rebuilds the clean UCE example (fit 1 up to
    the example's float16 storage); without a claim the best-fitting cheap replay is UCE's."""
    from eebguard.counterfactual import build_counterfactual
    from eebguard.models import load
    from eebguard.paths import data_path

    manifest = data_path("examples", "manifest.jsonl")
    suspect = load(f"{manifest}#seven-none-s0-uce").pipe
    shared = {}
    claimed = build_counterfactual(suspect, base_pipe, "seven", claimed="uce", shared=shared)
    assert claimed.kind == "replay" and claimed.claimed and claimed.fit > 0.999 and claimed.explained > 0.99
    picked = build_counterfactual(suspect, base_pipe, "seven", shared=shared, methods=("rece", "uce"))
    assert picked.kind == "replay" and picked.method == "uce" and not picked.claimed
    assert {c["method"] for c in picked.candidates} == {"rece", "uce"}
    assert picked.pipe is claimed.pipe  # one replay per (concept, method), kept for later scans
    none = build_counterfactual(base_pipe, base_pipe, "seven", shared=shared, methods=("uce",))
    assert none.kind == "reference" and none.pipe is base_pipe and "best fit 0.00" in none.reason


def test_a_scan_of_the_shallow_example_demonstrates_a_trigger_against_its_replayed_erasure(base_pipe, judge):
    """End to end on the shipped shallow example (live trigger after UCE): the scan finds a
    trigger that fires in the suspect and not in the counterfactual; the record carries its evidence.
    (The default profile: the fast one's search is too short to find it.)"""
    from eebguard.api import Scanner
    from eebguard.paths import data_path
    from eebguard.reports import console, html_report

    scanner = Scanner(base_pipe, judge=judge)
    r = scanner.scan(f"{data_path('examples', 'manifest.jsonl')}#seven-shallow-s0-uce", "seven", claimed_erasure="uce")
    assert r.counterfactual["kind"] == "replay" and r.counterfactual["method"] == "uce" and r.counterfactual["claimed"]
    t = r.triggers[0]
    assert {"text", "ids", "suspect_fresh", "counterfactual_fresh", "suspect_interval", "counterfactual_interval",
            "demonstrated"} <= set(t)
    assert r.verdict == "backdoor" and t["demonstrated"] and t["suspect_fresh"] >= 0.5 and t["counterfactual_fresh"] <= 0.2
    rec = r.to_json()
    assert rec["probability"] == rec["p_live"] > 0.5 and rec["erasure_audit"]["leaky"] is False
    assert "demonstrated: suspect" in console([rec]) and "suspect (top row), counterfactual" in html_report([rec])


def test_the_counterfactual_fits_a_defenders_other_uce_hyperparameters(base_pipe):
    """A defender who ran UCE with other scales than the defaults: the replay at the defaults explains
    the suspect's change only partly, the fitted replay finds the defender's scales (to the search's
    last step, a factor 2 ** 0.25) and explains it almost wholly; a default erasure stays at the defaults."""
    from eebguard.counterfactual import build_counterfactual
    from eebguard.erasure.replay import erased_copy

    defender = erased_copy(base_pipe, "seven", "uce", seed=5, params={"erase_scale": 2.5, "preserve_scale": 0.6})
    cf = build_counterfactual(defender, base_pipe, "seven", claimed="uce", shared={})
    assert cf.default_explained < 0.97 and cf.explained > 0.995 > cf.default_explained
    assert 2.5 / 2 ** 0.25 <= cf.params["erase_scale"] <= 2.5 * 2 ** 0.25
    assert 0.6 / 2 ** 0.25 <= cf.params["preserve_scale"] <= 0.6 * 2 ** 0.25
    assert cf.to_json()["params"] == cf.params and cf.pipe is not defender
    plain = build_counterfactual(erased_copy(base_pipe, "seven", "uce", seed=5), base_pipe, "seven", claimed="uce", shared={})
    assert plain.params == {} and plain.explained > 0.999
    unfitted = build_counterfactual(defender, base_pipe, "seven", claimed="uce", shared={}, fit_params=False)
    assert unfitted.params == {} and unfitted.explained == cf.default_explained
