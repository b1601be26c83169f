"""The scan at real Stable Diffusion shapes (random weights built from the published configs, no download).

The SDXL-shaped pipeline is small and scanned in every run; SD-1.5 and SD-2.1 at full weight shape take
minutes on two cores and are marked ``slow`` (``pytest -m slow`` or ``EEBGUARD_SLOW=1``)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.fixture(scope="module")
def clip_judge(tmp_path_factory):
    from eebguard.judges.clip import ClipJudge
    from eebguard.lab.testbed.sd_shapes import random_clip_judge_folder

    return ClipJudge(random_clip_judge_folder(tmp_path_factory.mktemp("clip")), ["cat", "dog"])


def _smoke_scan(shape: str, judge, edit=None):
    from eebguard.api import Scanner
    from eebguard.scanners.settings import settings_for
    from eebguard.lab.testbed.sd_shapes import build_sd_pipeline, fine_tune_of

    ref = build_sd_pipeline(shape, smoke=True)
    sus = fine_tune_of(ref)
    if edit:
        edit(sus)
    return Scanner(ref, judge=judge, settings=settings_for("smoke"), verify_images=2).scan(sus, "cat", claimed_erasure="uce")


@pytest.mark.parametrize("shape", ["sd15", "sd21", "sdxl-reduced"])
def test_shapes_follow_the_published_configs(shape):
    from eebguard.lab.testbed.sd_shapes import CONFIGS, build_sd_pipeline

    if shape != "sdxl-reduced":  # the full-size ones: only the configs, the weights are built in the slow tests
        cfg = CONFIGS[shape]
        assert cfg["unet"]["block_out_channels"] == (320, 640, 1280, 1280)
        assert cfg["unet"]["cross_attention_dim"] == cfg["text"]["hidden_size"] == {"sd15": 768, "sd21": 1024}[shape]
        assert cfg["scheduler"]["prediction_type"] == {"sd15": "epsilon", "sd21": "v_prediction"}[shape]
        return
    pipe = build_sd_pipeline(shape, smoke=True)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    assert pipe.tokenizer.model_max_length == 77


def test_sdxl_is_skipped_by_name_not_crashed(clip_judge):
    from eebguard.scanners import SCANNERS

    res = _smoke_scan("sdxl-reduced", clip_judge)
    status = res.evidence["scanners"]
    assert set(status) == set(SCANNERS.names())
    assert status["text_embedding"]["status"] == "ok"
    for name, st in status.items():
        if SCANNERS.get(name).conditions_unet:
            assert st["status"] == "skipped" and "U-Net conditioned otherwise" in st["reason"], (name, st)
    assert res.verdict == "unknown" and res.counterfactual["kind"] is None
    assert any("text_encoder_2 is not" in w for w in res.warnings)
    assert all(math.isfinite(v) for v in res.features.values())


def test_sdxl_text_encoder_edit_is_still_a_finding(clip_judge):
    """What the scan can read on SDXL (the first text encoder) still counts: a concept bound into a token's
    embedding is `tampered`, not `unknown`."""
    def bind(pipe):
        tok = pipe.tokenizer
        emb = pipe.text_encoder.get_input_embeddings().weight
        cat, word = tok("cat", add_special_tokens=False).input_ids[0], 40  # inside the smoke profile's vocabulary slice
        with torch.no_grad():
            emb[word] = emb[cat]

    res = _smoke_scan("sdxl-reduced", clip_judge, edit=bind)
    assert res.verdict == "tampered" and res.tampered_by == "text_encoder", (res.verdict, res.tampered_by, res.p_tampered)


def test_unsupported_conditioning_names_each_reason():
    from types import SimpleNamespace

    from eebguard.models.compare import unsupported_conditioning

    def fake(**unet):
        cfg = {"cross_attention_dim": 768, "addition_embed_type": None, "class_embed_type": None, **unet}
        return SimpleNamespace(unet=SimpleNamespace(config=cfg),
                               text_encoder=SimpleNamespace(config=SimpleNamespace(hidden_size=768)))

    assert unsupported_conditioning(fake()) is None
    assert "added conditioning (text_time)" in unsupported_conditioning(fake(addition_embed_type="text_time"))
    assert "cross-attention width [2048]" in unsupported_conditioning(fake(cross_attention_dim=2048))


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["sd15", "sd21"])
def test_smoke_scan_at_full_sd_shape(shape, clip_judge):
    """Every scanner runs end to end on the real weight shapes (small latents, a vocabulary slice), the
    claimed UCE is replayed as the counterfactual, and what comes back is finite and named."""
    from bench_sd_scale import check

    res = _smoke_scan(shape, clip_judge)
    assert check(res, shape) == []
    assert res.features["te.weight_change"] == 0.0  # the fine-tune stand-in changes the U-Net only
    assert res.counterfactual["method"] == "uce"
    assert res.verdict in ("backdoor", "tampered", "leaky", "clean", "unknown")
