"""Original CompVis/LDM single-file checkpoints (``model.diffusion_model.*`` ...), loaded by diffusers' single-file
loader after eebguard has checked, on meta tensors built from the header, that every key maps to a parameter."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from eebguard.models.configs import check_entries, expected_entries, instantiate, module_config
from eebguard.models.errors import UnexpectedWeights, wrap_errors

UNET_PREFIX = "model.diffusion_model."
CLIP_PREFIX = "cond_stage_model.transformer."
OPEN_CLIP_PREFIX = "cond_stage_model.model."
VAE_PREFIX = "first_stage_model."
#: tensors real LDM checkpoints carry that are not model weights (schedule buffers, EMA copies)
IGNORED_KEYS = {
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "lvlb_weights",
    "model_ema.decay", "model_ema.num_updates",
}
IGNORED_PREFIXES = ("model_ema.",)
POSITION_IDS = ("text_model.embeddings.position_ids", "embeddings.position_ids")


def is_ldm(keys) -> bool:
    return any(k.startswith(UNET_PREFIX) for k in keys)


def _meta_checkpoint(entries: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, dtype=dt, device="meta") for k, (shape, dt) in entries.items()}


def precheck(entries: dict[str, tuple[tuple[int, ...], torch.dtype]], base_pipe, where: str) -> set[str]:
    """Validate an LDM key set against the base architecture without touching tensor data.

    Returns the components present in the checkpoint. Raises UnexpectedWeights / MissingWeights / ShapeMismatch.
    """
    from diffusers.loaders import single_file_utils as sfu

    known = (UNET_PREFIX, CLIP_PREFIX, OPEN_CLIP_PREFIX, VAE_PREFIX)
    for k in sorted(entries):
        if k in IGNORED_KEYS or k.startswith(IGNORED_PREFIXES) or k.startswith(known):
            continue
        raise UnexpectedWeights(f"{where}: tensor {k} is not part of an SD 1.x/2.x checkpoint")
    ckpt = _meta_checkpoint(entries)
    present = set()

    with wrap_errors(f"{where}: LDM key conversion failed", UnexpectedWeights):
        unet_keys = [k for k in ckpt if k.startswith(UNET_PREFIX)]
        unet_cfg = dict(base_pipe.unet.config)
        converted = sfu.convert_ldm_unet_checkpoint(ckpt, unet_cfg)
        # the converter silently drops keys it has no rule for: a count difference means hidden tensors
        if len(converted) != len(unet_keys):
            raise UnexpectedWeights(
                f"{where}: {len(unet_keys) - len(converted)} tensors under {UNET_PREFIX} map to no U-Net parameter"
            )
        _check(converted, "unet", base_pipe, where)
        present.add("unet")

        if any(k.startswith(CLIP_PREFIX) for k in ckpt):
            conv = sfu.convert_ldm_clip_checkpoint(ckpt)
            conv = {k.removeprefix("text_model."): v for k, v in conv.items() if k not in POSITION_IDS}
            _check(conv, "text_encoder", base_pipe, where)
            present.add("text_encoder")
        elif any(k.startswith(OPEN_CLIP_PREFIX) for k in ckpt):
            te = instantiate("text_encoder", module_config("text_encoder", base_pipe.text_encoder), where)
            conv = sfu.convert_open_clip_checkpoint(te, ckpt, prefix=OPEN_CLIP_PREFIX)
            conv = {k.removeprefix("text_model."): v for k, v in conv.items() if k not in POSITION_IDS}
            _check(conv, "text_encoder", base_pipe, where)
            present.add("text_encoder")

        if any(k.startswith(VAE_PREFIX) for k in ckpt):
            if getattr(base_pipe, "vae", None) is None:
                raise UnexpectedWeights(f"{where}: checkpoint has {VAE_PREFIX}* weights but the base has no VAE")
            conv = sfu.convert_ldm_vae_checkpoint(ckpt, dict(base_pipe.vae.config))
            n_vae = sum(k.startswith(VAE_PREFIX) for k in ckpt)
            if len(conv) != n_vae:
                raise UnexpectedWeights(f"{where}: {n_vae - len(conv)} tensors under {VAE_PREFIX} map to no VAE parameter")
            _check(conv, "vae", base_pipe, where)
            present.add("vae")
    return present


def _check(converted: dict, component: str, base_pipe, where: str) -> None:
    module = getattr(base_pipe, component)
    expected = expected_entries(instantiate(component, module_config(component, module), where))
    found = {k: (tuple(v.shape), v.dtype) for k, v in converted.items()}
    check_entries(expected, found, where, prefix=f"{component}.")


def load_ldm(path: Path, entries, base_pipe, where: str, dtype=torch.float32):
    """``StableDiffusionPipeline.from_single_file`` with the base's configs as the architecture."""
    from diffusers import StableDiffusionPipeline

    from eebguard.models.formats import export_config_folder, skip_kwargs

    present = precheck(entries, base_pipe, where)
    kwargs = skip_kwargs()
    # components the file does not carry come from the base (UNet-only checkpoints, files without a VAE)
    for comp in ("text_encoder", "vae"):
        if comp not in present:
            kwargs[comp] = getattr(base_pipe, comp, None)
    with tempfile.TemporaryDirectory(prefix="eebguard-config-") as cfg_dir:
        export_config_folder(base_pipe, Path(cfg_dir))
        with wrap_errors(f"{where}: diffusers single-file loading failed"):
            pipe = StableDiffusionPipeline.from_single_file(
                str(path), config=cfg_dir, local_files_only=True, torch_dtype=dtype, **kwargs
            )
    return pipe
