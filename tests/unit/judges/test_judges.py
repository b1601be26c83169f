"""Judges: the CLIP judge (user-supplied weights; here a tiny CLIP built from config with the real CLIP
vocabulary) and what the reference-free soft search needs of a judge: gradients to the images."""
import pytest
import torch

import model_builders as mb


@pytest.fixture(scope="module")
def tiny_clip_folder(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    tok = mb.testbed_pipe().tokenizer  # the real CLIP BPE vocabulary
    cfg = CLIPConfig(
        text_config=dict(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, projection_dim=16),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, projection_dim=16),
        projection_dim=16)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_clip")
    CLIPModel(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def test_clip_judge_scores_named_concepts_and_passes_gradients(tiny_clip_folder):
    from eebguard.judges import get_judge

    judge = get_judge("clip", path=str(tiny_clip_folder), concepts=["seven", "circle"])
    assert judge.concepts == ("seven", "circle", "none") and judge.differentiable
    images = (torch.rand(3, 3, 16, 16) * 2 - 1).requires_grad_(True)
    p = judge.probabilities(images.detach())
    assert p.shape == (3, 3) and abs(float(p.sum(1).mean()) - 1) < 1e-5
    judge.logits_torch(images)[:, 0].sum().backward()
    assert images.grad is not None and float(images.grad.abs().sum()) > 0
    with pytest.raises(KeyError):
        judge.concept_probability(images.detach(), "triangle")


def test_the_judge_driven_search_runs_through_a_vae_and_a_clip_judge(tiny_clip_folder):
    """An SD-shaped path: latents decoded by a VAE, judged by CLIP, gradients through both, in chunks and
    with the activations recomputed in backward, as on a GPU."""
    from eebguard.judges import get_judge
    from eebguard.probes import concept_prompts
    from eebguard.scanners import ScanContext, ScanSettings, run_scanners

    pipe, _ = mb.vae_pipe_and_folder()
    judge = get_judge("clip", path=str(tiny_clip_folder), concepts=["seven", "circle"])
    settings = ScanSettings(judge_samples=2, judge_steps=3, judge_sample_steps=2, judge_batch=1, judge_checkpoint=True)
    ctx = ScanContext(pipe, "seven", concept_prompts("seven"), judge=judge, settings=settings)
    feats = run_scanners(ctx, names=["soft_trigger"])
    assert feats.evidence["scanners"]["soft_trigger"]["status"] == "ok", feats.evidence["scanners"]
    assert sorted(feats.values) == ["soft.judge_early_reach", "soft.judge_reach", "soft.judge_start"]
    assert all(0.0 <= v <= 1.0 for v in feats.values.values())
