"""``--reference auto``: the base a model derives from, found by fingerprint (eebguard/models/base_match.py)."""
from __future__ import annotations

import json

import pytest

EXAMPLE = "data/examples/models/seven-shallow-s0-uce.safetensors"


@pytest.fixture(scope="module")
def other_base():
    """A second base of the testbed's shape: the untrained testbed (same architecture, other weights)."""
    import model_builders

    return str(model_builders.testbed_folder())


def test_a_testbed_model_is_attributed_to_the_testbed(base_pipe, other_base):
    from eebguard.models import load
    from eebguard.models.base_match import MATCH_DISTANCE, choose_base

    sus = load(EXAMPLE).pipe
    name, ref, ev = choose_base(sus, [(other_base, lambda: load(other_base).pipe), ("testbed", lambda: base_pipe)])
    assert name == "testbed" and ref is base_pipe
    assert ev["chosen"]["identical"] > 0.9 and ev["runner_up"]["name"] == other_base
    # the untrained testbed is the trained one's initialisation: related, but far beyond a fine-tune
    assert ev["runner_up"]["identical"] < 0.1 and ev["runner_up"]["distance"] > MATCH_DISTANCE


@pytest.mark.parametrize("truth", [0, 1])
def test_a_fine_tune_of_one_of_two_sd_shaped_bases_is_attributed_right(truth):
    from eebguard.models.base_match import choose_base
    from eebguard.lab.testbed.sd_shapes import build_sd_pipeline, fine_tune_of

    bases = [build_sd_pipeline("sdxl-reduced", seed=s, smoke=True) for s in (10, 11)]
    sus = fine_tune_of(bases[truth], seed=3, fraction=1.0)  # every U-Net tensor moved: no bit-identical U-Net
    name, _, ev = choose_base(sus, [(f"base{i}", lambda i=i: bases[i]) for i in (0, 1)])
    assert name == f"base{truth}"
    assert ev["chosen"]["components"]["unet"]["identical"] == 0.0 and ev["chosen"]["distance"] < 0.01


def test_incompatible_and_unloadable_candidates_are_listed_not_chosen(base_pipe):
    from eebguard.models.base_match import choose_base
    from eebguard.models.errors import ModelLoadError
    from eebguard.lab.testbed.sd_shapes import build_sd_pipeline

    def broken():
        raise ModelLoadError("not a model")

    name, ref, ev = choose_base(base_pipe, [("xl", lambda: build_sd_pipeline("sdxl-reduced", smoke=True)),
                                            ("broken", broken)])
    assert name is None and ref is None and ev["chosen"] is None
    reasons = {c["name"]: c["reason"] for c in ev["candidates"]}
    assert reasons["xl"].startswith("text_encoder") and "shape" in reasons["xl"] and "failed to load: not a model" in reasons["broken"]


def test_scan_with_reference_auto_records_the_choice_and_warns_without_one(tmp_path, other_base):
    """End to end through the CLI: the example is scanned against the testbed it derives from; a model that
    no candidate explains (the untrained testbed, against the trained one alone) is scanned reference-free
    with a warning, never against a wrong base in silence."""
    from eebguard.cli import main

    out = tmp_path / "r.json"
    code = main(["scan", EXAMPLE, other_base, "--concept", "seven", "--reference", "auto", "--base-candidates",
                 "testbed", "--profile", "smoke", "--claimed-erasure", "uce", "--format", "json", "-o", str(out), "-q",
                 "--exit-zero"])
    assert code == 0
    recs = json.loads(out.read_text())
    recs = recs if isinstance(recs, list) else recs.get("results", [recs])
    by = {r["source"]: r for r in recs}
    ex, other = by[EXAMPLE], by[other_base]
    assert ex["reference"] == "testbed" and ex["base_match"]["chosen"]["name"] == "testbed"
    assert ex["counterfactual"]["kind"] == "replay"
    assert other["reference"] is None and other["base_match"]["chosen"] is None
    assert any("no candidate base explains the model" in w for w in other["warnings"])
