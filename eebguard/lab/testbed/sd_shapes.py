"""Random-weight pipelines of the real Stable Diffusion shapes, built from their published configs.

No download: the configs below are those of SD-1.5 (``runwayml/stable-diffusion-v1-5``), SD-2.1
(``stabilityai/stable-diffusion-2-1``, 768-v) and an SDXL-shaped pipeline reduced in width so it runs
on two CPU cores (two text encoders, pooled embeddings, added time ids). The tokenizer is the
testbed's (the real CLIP BPE vocabulary) at 77 tokens. They exercise the scan at real shape (weight
shapes, sequence length, latent channels, v-prediction); their weights are random, so what a scan
of them says about concepts means nothing.

``smoke=True`` keeps every weight shape but shrinks the latent (``sample_size``) so that a scan's
generations are cheap on CPU; the weights do not depend on it.
"""
from __future__ import annotations

import torch

SHAPES = ("sd15", "sd21", "sdxl-reduced")
SMOKE_SAMPLE_SIZE = 8  # latent side in smoke mode (64 px images)

_SD_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                     clip_sample=False, set_alpha_to_one=False, steps_offset=1)

# what SD-1.x and SD-2.x share: the U-Net's levels and the VAE
_SD_UNET = dict(in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
_SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
               block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
               up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215)

CONFIGS = {
    "sd15": {
        "text": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                     num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
                     bos_token_id=49406, eos_token_id=49407, pad_token_id=1),
        "unet": dict(_SD_UNET, sample_size=64, cross_attention_dim=768, attention_head_dim=8),
        "vae": dict(_SD_VAE, sample_size=512),
        "scheduler": dict(_SD_SCHEDULER, prediction_type="epsilon"),
        "pad": "<|endoftext|>",
    },
    "sd21": {
        # OpenCLIP ViT-H/14's text tower as SD-2 ships it (23 of its 24 layers, the penultimate output)
        "text": dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                     num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
                     bos_token_id=49406, eos_token_id=49407, pad_token_id=0),
        "unet": dict(_SD_UNET, sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                     use_linear_projection=True, upcast_attention=True),
        "vae": dict(_SD_VAE, sample_size=768),
        "scheduler": dict(_SD_SCHEDULER, prediction_type="v_prediction"),
        "pad": "!",
    },
    "sdxl-reduced": {
        # SDXL's structure (CLIP-L + OpenCLIP-bigG-shaped encoders concatenated, pooled text embeddings and
        # six time ids added to the time embedding, transformer depth per level) at small widths
        "text": dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=64,
                     bos_token_id=49406, eos_token_id=49407, pad_token_id=49407),
        "text_2": dict(vocab_size=49408, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                       num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu", projection_dim=96,
                       bos_token_id=49406, eos_token_id=49407, pad_token_id=0),
        "unet": dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
                     block_out_channels=(32, 64, 64),
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                     transformer_layers_per_block=(1, 1, 2), cross_attention_dim=160, attention_head_dim=(2, 4, 4),
                     use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=96 + 6 * 8, norm_num_groups=8),
        "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=256,
                    block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                    up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, scaling_factor=0.13025),
        "scheduler": dict(_SD_SCHEDULER, prediction_type="epsilon"),
        "pad": "<|endoftext|>",
    },
}


def _tokenizer(pad: str):
    from eebguard.testbed.tokenizer import load_tokenizer

    tok = load_tokenizer(model_max_length=77)
    if pad != tok.pad_token:
        tok.pad_token = pad
    return tok


def build_sd_pipeline(shape: str, seed: int = 0, *, smoke: bool = False, dtype: torch.dtype = torch.float32):
    """A random-weight pipeline of ``shape`` (one of :data:`SHAPES`): ``StableDiffusionPipeline`` for
    SD-1.5/2.1, ``StableDiffusionXLPipeline`` for the reduced SDXL shape.

    Examples
    --------
    >>> pipe = build_sd_pipeline("sd15", smoke=True)  # doctest: +SKIP
    >>> pipe.unet.config.cross_attention_dim
    768
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if shape not in CONFIGS:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    cfg = CONFIGS[shape]
    unet_cfg = dict(cfg["unet"], sample_size=SMOKE_SAMPLE_SIZE) if smoke else cfg["unet"]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**cfg["vae"])
    scheduler = DDIMScheduler(**cfg["scheduler"])
    tok = _tokenizer(cfg["pad"])
    if shape == "sdxl-reduced":
        from diffusers import StableDiffusionXLPipeline

        te1 = CLIPTextModel(CLIPTextConfig(**cfg["text"]))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_2"]))
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok,
                                         tokenizer_2=_tokenizer(CONFIGS[shape]["pad"]), unet=unet, scheduler=scheduler,
                                         force_zeros_for_empty_prompt=True)
    else:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**cfg["text"])), tokenizer=tok,
                                       unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       image_encoder=None, requires_safety_checker=False)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if m is not None:
            m.eval().requires_grad_(False)
    return pipe


def fine_tune_of(pipe, seed: int = 1, scale: float = 1e-3, fraction: float = 0.1):
    """A copy of ``pipe`` with a small random change on ``fraction`` of its U-Net tensors: a stand-in for
    a fine-tune of that base (the base-attribution test tells it from a fine-tune of another base)."""
    import copy

    out = copy.deepcopy(pipe)  # every component, the SDXL pipeline's second encoder included
    g = torch.Generator().manual_seed(seed)
    params = list(out.unet.named_parameters())
    with torch.no_grad():
        for i, (_, p) in enumerate(params):
            if i % max(1, round(1 / fraction)) == 0:
                p.add_(scale * p.std().clamp(min=1e-3) * torch.randn(p.shape, generator=g).to(p))
    return out


#: a random-weight CLIP judge small enough for CPU smoke runs (what it scores is meaningless)
JUDGE_CONFIG = dict(text=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, max_position_embeddings=77),
                    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=32, patch_size=8),
                    projection_dim=32)


#: CLIP ViT-L/14's shape (``openai/clip-vit-large-patch14``), for timings of a judge as users run it
JUDGE_CONFIG_FULL = dict(text=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                   num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"),
                         vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                     num_attention_heads=16, image_size=224, patch_size=14, hidden_act="quick_gelu"),
                         projection_dim=768)


def random_clip_judge_folder(out, full: bool = False) -> str:
    """Save a random-weight ``CLIPModel`` (safetensors) and the testbed tokenizer to ``out``, a folder the
    :class:`eebguard.judges.clip.ClipJudge` loads like a user's local CLIP weights (``full``: ViT-L/14's
    shape, else a tiny one)."""
    from pathlib import Path

    from transformers import CLIPConfig, CLIPModel

    out = Path(out)
    torch.manual_seed(0)
    jc = JUDGE_CONFIG_FULL if full else JUDGE_CONFIG
    cfg = CLIPConfig(text_config=jc["text"], vision_config=jc["vision"], projection_dim=jc["projection_dim"])
    CLIPModel(cfg).save_pretrained(out, safe_serialization=True)
    _tokenizer("<|endoftext|>").save_pretrained(out)
    return str(out)
