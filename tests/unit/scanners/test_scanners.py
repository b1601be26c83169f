"""Scanners: a contract over every registered scanner, and what they find on a planted backdoor."""
import math

import pytest
import torch

from eebguard.features import SCHEMA_VERSION, Features
from eebguard.scanners import feature_names, feature_spec
from eebguard.probes import concept_prompts
from eebguard.scanners import SCANNERS, ScanContext, ScanSettings, run_scanners

FAST = dict(soft_steps=20, search_steps=2, n_candidates=16, objective_samples=8, image_samples=8, sample_steps=10)


@pytest.fixture(scope="module")
def scanned(eeb_tiny_pipelines, judge):
    t = eeb_tiny_pipelines
    # the counterfactual: the base erased the way the suspect was (UCE), without the backdoor
    ctx = ScanContext(t["backdoored_erased"], t["concept"], concept_prompts(t["concept"]), reference=t["base"],
                      judge=judge, settings=ScanSettings(**FAST), claimed_erasure="uce",
                      counterfactual=t["clean_erased"])
    return ctx, run_scanners(ctx)


@pytest.fixture(scope="module")
def scanned_without_reference(eeb_tiny_pipelines, judge):
    t = eeb_tiny_pipelines
    ctx = ScanContext(t["backdoored_erased"], t["concept"], concept_prompts(t["concept"]), reference=None,
                      judge=judge, settings=ScanSettings(**FAST))
    return ctx, run_scanners(ctx)


def test_every_scanner_self_describes_and_declares_features():
    for name in SCANNERS:
        d = SCANNERS.get(name).describe()
        assert d["name"] == name and d["summary"] and d["features"]
        for f in d["features"]:
            spec = feature_spec(f)
            assert spec.scanner == name and spec.description
            # a scanner that cannot run without a reference has no feature that claims it can, and a
            # feature of the reference-free mode only cannot need a reference
            assert spec.needs_reference or not d["needs_reference"], f
            assert not (spec.reference_free_only and spec.needs_reference), f


@pytest.mark.parametrize("name", sorted(SCANNERS.names()))
def test_contract_each_scanner_emits_only_declared_finite_features(scanned, name):
    ctx, feats = scanned
    assert feats.evidence["scanners"][name]["status"] == "ok", feats.evidence["scanners"][name]
    declared = {f.name for f in SCANNERS.get(name).features}
    emitted = {k for k in feats.values if feature_spec(k).scanner == name}
    assert emitted and emitted <= declared
    assert all(math.isfinite(feats.values[k]) for k in emitted)


def test_missing_reference_means_absent_not_zero(scanned_without_reference):
    _, feats = scanned_without_reference
    for k in feats.values:
        assert not feature_spec(k).needs_reference, k
    assert feats.evidence["scanners"]["hard_trigger"]["status"] == "skipped"
    assert any(math.isnan(v) for v in feats.vector(feature_names()))


def test_without_a_reference_the_soft_search_is_driven_by_the_judge(scanned_without_reference, eeb_tiny_pipelines):
    """The soft-trigger scanner's weaker mode: the judge's log-probability on few-step generations is the
    objective; its features are judged probabilities, and only this mode reports them. Without a
    differentiable judge that knows the concept there is nothing to optimise: skipped, with the reason."""
    ctx, feats = scanned_without_reference
    assert feats.evidence["scanners"]["soft_trigger"]["status"] == "ok"
    assert feats.evidence["soft_trigger"]["mode"] == "judge"
    judged = {k: v for k, v in feats.values.items() if k.startswith("soft.")}
    assert sorted(judged) == ["soft.judge_early_reach", "soft.judge_reach", "soft.judge_start"]
    assert all(0.0 <= v <= 1.0 for v in judged.values())
    assert judged["soft.judge_start"] <= judged["soft.judge_early_reach"] <= judged["soft.judge_reach"]
    curve = feats.evidence["soft_trigger"]["loss_curve_reach"]
    assert max(curve) == pytest.approx(judged["soft.judge_reach"], abs=1e-4)
    t = eeb_tiny_pipelines
    blind = ScanContext(t["backdoored_erased"], t["concept"], ctx.prompts, judge=None, settings=ctx.settings)
    assert run_scanners(blind, names=["soft_trigger"]).evidence["scanners"]["soft_trigger"] == {
        "status": "skipped", "reason": "needs a reference model, or a differentiable judge that knows the concept"}


def test_the_judge_driven_search_bounds_memory_without_changing_its_answer(eeb_tiny_pipelines, judge):
    """On SD the judge-driven search differentiates through a sampler and a VAE: gradients accumulate over
    chunks of generations, and activations can be recomputed in backward. Neither changes what it finds."""
    from eebguard.scanners.soft_trigger import soft_search

    t = eeb_tiny_pipelines
    curves = []
    for batch, checkpoint in ((4, False), (3, True), (1, False)):
        settings = ScanSettings(judge_samples=4, judge_steps=4, judge_batch=batch, judge_checkpoint=checkpoint)
        ctx = ScanContext(t["backdoored_erased"], t["concept"], concept_prompts(t["concept"]), judge=judge,
                          settings=settings)
        obj = ctx.judge_objective()
        assert obj.grad_batch == batch and obj.checkpoint is checkpoint
        vec, curve = soft_search(ctx, obj, 1, settings.judge_steps, seed=0)
        curves.append((vec, curve))
    for vec, curve in curves[1:]:
        assert curve == pytest.approx(curves[0][1], rel=1e-4, abs=1e-6)
        assert torch.allclose(vec, curves[0][0], rtol=1e-4, atol=1e-5)


def test_a_reference_free_scan_computes_exactly_the_reference_free_features_and_as_a_reference_scan_does(
        scanned, scanned_without_reference):
    """The reference-free detector is fitted on zoo scans made *with* a reference; that is sound only if
    its features come out the same without one (they read the suspect alone, on fixed seeds), and if a
    reference-free scan has every one of them and nothing the search (which needs a reference) produces."""
    from eebguard.detect.estimator import reference_free_features, reference_free_only_features

    free = reference_free_features()
    _, without = scanned_without_reference
    _, with_ref = scanned
    assert sorted(without.values) == sorted(free + reference_free_only_features())
    assert not set(with_ref.values) & set(reference_free_only_features())  # the judge-driven mode is the fallback
    assert {k: with_ref.values[k] for k in free} == pytest.approx({k: without.values[k] for k in free}, rel=1e-6, abs=1e-9)
    assert without.evidence["scanners"]["hard_trigger"]["status"] == "skipped"
    assert "triggers" not in without.evidence.get("hard_trigger", {})


def test_features_round_trip_and_version(scanned):
    _, feats = scanned
    back = Features.from_json(feats.to_json())
    assert back.values == pytest.approx(feats.values)
    assert back.schema_version == SCHEMA_VERSION
    with pytest.raises(ValueError, match="schema"):
        Features.from_json({**feats.to_json(), "schema_version": "0"})
    with pytest.raises(ValueError, match="schema"):  # one schema at a time: an earlier record is rescanned
        Features.from_json({**feats.to_json(), "schema_version": "4"})
    assert len(feats.vector(feature_names())) == len(feature_names()) and SCHEMA_VERSION == "5"


def test_recovers_a_backdoor_trigger_and_its_place(scanned, eeb_tiny_pipelines, judge):
    from eebguard.scanners.hard_trigger import image_reach

    ctx, feats = scanned
    triggers = feats.evidence["hard_trigger"]["triggers"]
    best = triggers[0]
    assert best["image_reach"] >= 0.5 and feats.values["reach.name_image"] <= 0.25, best
    # The search may find a stronger trigger than the planted one (a K/V edit moves a whole subspace);
    # either way it must be the backdoor's doing: the same erasure without the backdoor does not obey it.
    t = eeb_tiny_pipelines
    clean = ScanContext(t["clean_erased"], t["concept"], concept_prompts(t["concept"]), reference=t["base"],
                        judge=judge, settings=ScanSettings(**FAST))
    assert image_reach(clean, best["ids"]) <= 0.25
    # the contrastive search scored it in both: the suspect answers it, the counterfactual does not
    assert best["score_reach"] == pytest.approx(min(max(best["suspect_score"], 0), 1) - min(max(best["counterfactual_score"], 0), 1), abs=1e-4)
    assert best["score_reach"] > 0.3 and best["counterfactual_score"] < best["suspect_score"]
    loc = feats.evidence["localisation"]
    assert loc["component"] == "cross_attention_kv"
    # with a judge the component is named from the judged drops; the unchanged text encoder drops exactly 0
    assert loc["basis"] == "image" and loc["image_drops"]["text_encoder"] == 0.0
    assert max(loc["image_drops"], key=loc["image_drops"].get) == "cross_attention_kv"


def test_the_kv_screen_behind_no_prefix_is_the_scanners_and_behind_a_prefix_reads_up_to_eos(scanned):
    """``kv_approach`` over ``vocab_rows`` is the cross_attention_kv scanner's screen; behind a prefix (a
    partial trigger, experiments/trigger_identifiability.py) the batch is encoded only up to EOS, and the
    causal encoder's rows there equal those of the padded batch."""
    from eebguard.scanners.cross_attention import kv_approach
    from eebguard.scanners.vocab import concept_rows, vocab_rows, vocabulary
    from eebguard.text import ids_batch

    ctx, feats = scanned
    vocab = vocabulary(ctx)
    # against the counterfactual (the scan's baseline), toward the reference's keys/values of the concept
    score = kv_approach(ctx.suspect.unet, ctx.counterfactual.unet, vocab_rows(ctx, "suspect"),
                        vocab_rows(ctx, "counterfactual"), concept_rows(ctx, "reference"),
                        target_unet=ctx.reference.unet)[0]
    for top in feats.evidence["cross_attention_kv"]["top_kv_approach"][:3]:
        assert float(score[int((vocab == top["id"]).nonzero()[0][0])]) == pytest.approx(top["score"], abs=1e-5)

    prefix = tuple(ctx.tokenizer("trap", add_special_tokens=False).input_ids)
    rows = vocab_rows(ctx, "suspect", prefix)
    assert rows["slot"].shape == (len(vocab), ctx.suspect.text_encoder.config.hidden_size)
    tpl, some = ctx.templates()[0], vocab[:: len(vocab) // 64][:64]
    full = ctx.suspect.text_encoder(ids_batch(ctx.tokenizer, [tpl], [[*prefix, int(v)] for v in some]))[0]
    slot = tpl.slot_start() + len(prefix)
    picked = [int(i) for i in range(0, len(vocab), len(vocab) // 64)][:64]
    assert torch.allclose(full[:, slot], rows["slot"][picked], atol=1e-4)
    assert torch.allclose(full[:, min(slot + 1 + len(tpl.suffix), 76)], rows["eos"][picked], atol=1e-4)
    assert not torch.allclose(rows["slot"], vocab_rows(ctx, "suspect")["slot"])  # the prefix is seen


def test_attribution_lets_the_template_compete_with_the_trigger(scanned):
    """Integrated gradients give zero to a token equal to its baseline: with only the trigger's slot padded
    the share was 1 by construction. Now the template's words carry some of the reach too."""
    _, feats = scanned
    n_trigger = len(feats.evidence["hard_trigger"]["triggers"][0]["tokens"])
    carried = [t for t in feats.evidence["attribution"]["tokens"] if t["share"]]
    assert len(carried) > n_trigger and 0.0 < feats.values["attr.trigger_share"] < 1.0


def test_attention_processors_are_restored(eeb_tiny_pipelines):
    from eebguard.attention import CrossAttentionRecorder

    unet = eeb_tiny_pipelines["base"].unet
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    with CrossAttentionRecorder(unet) as rec:
        unet(torch.zeros(1, 3, 16, 16), 10, encoder_hidden_states=torch.zeros(1, 24, unet.config.cross_attention_dim))
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before
    m = rec.mean_maps()
    assert m.shape == (1, 24, 16, 16) and torch.allclose(m.sum(1), torch.ones(1, 16, 16), atol=1e-4)


def test_localisation_names_no_component_when_no_reversal_removes_reach():
    from eebguard.scanners.localisation import locate

    assert locate({"text_encoder": 0.0, "cross_attention_kv": 0.8, "unet_other": 0.1}) == "cross_attention_kv"
    # an unchanged text encoder drops exactly 0; that must not make it the answer
    assert locate({"text_encoder": 0.0, "cross_attention_kv": -1.2, "unet_other": -1.3}) == "undetermined"
    assert locate({"text_encoder": 0.05, "cross_attention_kv": 0.02, "unet_other": -0.1}) == "undetermined"


def test_judged_drops_name_the_component_unless_the_images_do_not_change():
    from eebguard.scanners.localisation import name_component

    score = {"text_encoder": 0.0, "cross_attention_kv": -1.2, "unet_other": -1.3}  # the proxy sees nothing
    assert name_component(score, {"text_encoder": 0.0, "cross_attention_kv": 0.42, "unet_other": 0.0}) == (
        "cross_attention_kv", "image")
    # a saturated judge (the concept in every image with or without each component): the score decides
    score = {"text_encoder": 0.14, "cross_attention_kv": -0.1, "unet_other": 0.0}
    assert name_component(score, {"text_encoder": 0.0, "cross_attention_kv": 0.0, "unet_other": 0.0}) == (
        "text_encoder", "score")
    assert name_component(score, None) == ("text_encoder", "score")
    # every reversal removes every judged image (a tie): the score drops decide, whatever the dict order
    tied = {"text_encoder": 1.0, "cross_attention_kv": 1.0, "unet_other": 1.0}
    te_first = {"text_encoder": 0.33, "cross_attention_kv": 1.57, "unet_other": 3.99}
    kv_first = {"cross_attention_kv": 1.57, "unet_other": 3.99, "text_encoder": 0.33}
    assert name_component(te_first, tied) == name_component(kv_first, dict(reversed(tied.items()))) == (
        "unet_other", "score")
