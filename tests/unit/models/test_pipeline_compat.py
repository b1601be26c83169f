"""The shipped base is a standard diffusers pipeline folder."""
import torch


def test_plain_diffusers_loads_and_samples(base_path):
    from diffusers import StableDiffusionPipeline

    from eebguard.lab.testbed.build import PIXEL_PIPELINE_KWARGS

    pipe = StableDiffusionPipeline.from_pretrained(base_path, **PIXEL_PIPELINE_KWARGS)
    assert pipe.text_encoder.dtype == torch.float32 and pipe.unet.dtype == torch.float32
    assert len(pipe.tokenizer) == 49408 and pipe.tokenizer.model_max_length == 24
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and not pipe.scheduler.config.clip_sample
    out = pipe(["a red circle"] * 2, height=128, width=128, num_inference_steps=10, guidance_scale=4.0,
               output_type="latent", generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_our_sampler_matches_the_diffusers_pipeline(base_pipe):
    from eebguard.sampling import sample

    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = base_pipe(["handwritten three"] * 2, height=128, width=128, num_inference_steps=8, guidance_scale=4.0,
                    latents=noise.clone(), output_type="latent").images
    ours = sample(base_pipe, ["handwritten three"] * 2, steps=8, guidance=4.0, noise=noise.clone())
    assert torch.allclose(ref.clamp(-1, 1), ours, atol=1e-5)


def test_unet_has_cross_attention_at_every_level(base_pipe):
    from eebguard.attention import attn2_names

    names = attn2_names(base_pipe.unet)
    assert any(n.startswith("down_blocks.0") for n in names)  # 16x16
    assert any(n.startswith("down_blocks.2") for n in names)  # 4x4
    assert any(n.startswith("mid_block") for n in names)
