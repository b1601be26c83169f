"""Build the testbed: a tiny, real Stable-Diffusion-shaped pipeline in pixel space.

Same classes as SD 1.x (``CLIPTextModel`` with the real 49,408-token CLIP BPE vocabulary,
``UNet2DConditionModel`` with ``attn2`` cross-attention at every resolution level, DDPM/DDIM
schedulers, ``StableDiffusionPipeline``), shrunk to train on two CPU cores. There is no VAE: the
U-Net denoises 3x16x16 RGB images directly (see docs/testbed.md).
"""
from __future__ import annotations

from pathlib import Path

import torch

#: keyword arguments a VAE-less StableDiffusionPipeline needs to load
PIXEL_PIPELINE_KWARGS = dict(
    vae=None, safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False
)
TOKEN_EMBEDDING_STD = 0.15
MAX_TOKENS = 24  # prompt length incl. BOS/EOS (SD: 77); room for a 4-piece trigger in any template

TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=128,  # 64 leaves too little room for specific K/V edits (a trigger edit spills onto other words)
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=MAX_TOKENS,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
    projection_dim=128,
)
UNET_CONFIG = dict(
    sample_size=16,
    in_channels=3,
    out_channels=3,
    layers_per_block=1,
    block_out_channels=(32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=128,
    attention_head_dim=(2, 4, 4),  # diffusers' legacy name: heads per level (2 at 16x16 keeps CPU training fast)
    norm_num_groups=8,
)
TRAIN_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")


def build_pipeline(seed: int = 0):
    """A freshly initialised testbed pipeline (untrained) with the shipped tokenizer."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from eebguard.testbed.tokenizer import load_tokenizer

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    # Most of the 49,408 tokens never occur in testbed captions and keep their initial embedding. At
    # CLIP's std of 0.02 they are drowned by the context and every unknown word encodes alike (EOS
    # rows cos 0.9997), unlike SD's pretrained CLIP; a larger std keeps unknown words distinct.
    torch.nn.init.normal_(text_encoder.get_input_embeddings().weight, std=TOKEN_EMBEDDING_STD)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    scheduler = DDIMScheduler(**TRAIN_SCHEDULER, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(
        text_encoder=text_encoder,
        tokenizer=load_tokenizer(MAX_TOKENS),
        unet=unet,
        scheduler=scheduler,
        **{k: v for k, v in PIXEL_PIPELINE_KWARGS.items() if k != "image_encoder"},
    )


def save_pipeline(pipe, out: str | Path, fp16: bool = True) -> Path:
    """``save_pretrained`` as safetensors. With ``fp16`` the weights are stored in half precision (half
    the size) but the configs keep float32 as the compute dtype, so a plain ``from_pretrained`` gives a
    consistent float32 pipeline. The caller's pipeline is left untouched."""
    import copy
    import json

    out = Path(out)
    if fp16:
        pipe = copy.copy(pipe)  # shallow: swap in half-precision copies of the weighted components
        parts = {name: copy.deepcopy(getattr(pipe, name)).to(torch.float16) for name in ("text_encoder", "unet")}
        pipe.register_modules(**parts)
    pipe.save_pretrained(out, safe_serialization=True)
    te_cfg = out / "text_encoder" / "config.json"
    if te_cfg.is_file():  # transformers records the storage dtype; loading should compute in float32
        cfg = json.loads(te_cfg.read_text())
        cfg["dtype"] = "float32"
        te_cfg.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out
