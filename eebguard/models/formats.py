"""Recognising input formats, assembling pipelines, and the flat single-file layout (with a writer)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from eebguard.models.configs import MODEL_COMPONENTS

FLAT_PREFIXES = tuple(f"{c}." for c in MODEL_COMPONENTS)
CONFIGS_KEY = "eebguard_configs"
DELTA_FORMAT = "eebguard-delta"


def skip_kwargs() -> dict:
    """Components eebguard never loads (safety checker, image encoder): passing None keeps diffusers off them."""
    return dict(safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)


def assemble(text_encoder, tokenizer, unet, scheduler, vae=None):
    from diffusers import StableDiffusionPipeline

    kw = skip_kwargs()
    kw.pop("image_encoder")
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, **kw
    )
    return pipe


def copy_pipeline(pipe):
    """Independent copy of the weight-bearing modules (tokenizer shared: immutable in practice)."""
    import copy

    sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
    mods = {c: (copy.deepcopy(getattr(pipe, c)) if getattr(pipe, c, None) is not None else None)
            for c in MODEL_COMPONENTS}
    return assemble(mods["text_encoder"], pipe.tokenizer, mods["unet"], sched, mods["vae"])


def export_config_folder(pipe, out: Path) -> Path:
    """A weight-less diffusers folder (model_index + configs + tokenizer): the architecture for single-file loads."""
    import diffusers

    out.mkdir(parents=True, exist_ok=True)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
    }
    for comp in ("text_encoder", "tokenizer", "unet", "scheduler", "vae"):
        module = getattr(pipe, comp, None)
        if module is None:
            index[comp] = [None, None]
            continue
        lib = "transformers" if comp in ("text_encoder", "tokenizer") else "diffusers"
        index[comp] = [lib, type(module).__name__]
        if comp == "text_encoder":
            module.config.save_pretrained(out / comp)
        elif comp == "tokenizer":
            module.save_pretrained(out / comp)
        else:
            module.save_config(out / comp)
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    return out


def pipeline_configs(pipe) -> dict:
    """The JSON configs stored in a flat single file's metadata."""
    from eebguard.models.configs import module_config

    cfgs = {c: module_config(c, getattr(pipe, c)) for c in MODEL_COMPONENTS if getattr(pipe, c, None) is not None}
    cfgs["scheduler"] = dict(pipe.scheduler.config)
    cfgs["tokenizer"] = {"model_max_length": int(pipe.tokenizer.model_max_length)}
    return json.loads(json.dumps(cfgs, default=list))  # tuples -> lists, FrozenDicts -> dicts


def save_single_file(pipe, path: str | Path, dtype: torch.dtype | None = None, configs: bool = True) -> Path:
    """Write the flat layout: ``unet.<param>``, ``text_encoder.<param>`` (and ``vae.<param>``) in one safetensors
    file, with the component configs under ``__metadata__['eebguard_configs']`` so it loads without a base."""
    from safetensors.torch import save_file

    tensors = {}
    for comp in MODEL_COMPONENTS:
        module = getattr(pipe, comp, None)
        if module is None:
            continue
        for k, v in module.state_dict().items():
            v = v.detach().to("cpu")
            if dtype is not None and v.is_floating_point():
                v = v.to(dtype)
            tensors[f"{comp}.{k}"] = v.contiguous().clone()
    meta = {"format": "pt"}
    if configs:
        meta[CONFIGS_KEY] = json.dumps(pipeline_configs(pipe))
    path = Path(path)
    save_file(tensors, str(path), metadata=meta)
    return path
