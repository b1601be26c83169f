"""Builders for the eebguard.models tests: every input is made from the testbed, once per test session.

Cached builders write under one temporary folder (removed at exit); tests that damage files copy first.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import torch

COMPONENTS = ("text_encoder", "unet", "vae")


@functools.lru_cache(maxsize=None)
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="eebguard-model-tests-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.lru_cache(maxsize=None)
def testbed_pipe():
    """The untrained testbed pipeline in fp32. Shared: never mutate it (use ``fresh_pipe``)."""
    from eebguard.lab.testbed.build import build_pipeline

    return build_pipeline(0)


def fresh_pipe():
    """A private copy of the testbed pipeline."""
    from eebguard.models.formats import copy_pipeline

    return copy_pipeline(testbed_pipe())


@functools.lru_cache(maxsize=None)
def testbed_folder() -> Path:
    """``save_pipeline(fp16=False)``: loads back bit-exactly equal to ``testbed_pipe``."""
    from eebguard.lab.testbed.build import save_pipeline

    return save_pipeline(testbed_pipe(), workdir() / "tb32", fp16=False)


@functools.lru_cache(maxsize=None)
def testbed_folder_fp16() -> Path:
    """The shipped format (fp16 files); save_pipeline round-trips the modules through fp16, so use a copy."""
    from eebguard.lab.testbed.build import save_pipeline

    return save_pipeline(fresh_pipe(), workdir() / "tb16", fp16=True)


def state(pipe) -> dict[str, torch.Tensor]:
    """``{component.param: fp32 cpu tensor}`` for the weight-bearing components."""
    out = {}
    for comp in COMPONENTS:
        module = getattr(pipe, comp, None)
        if module is not None:
            out.update({f"{comp}.{k}": v.detach().float().cpu() for k, v in module.state_dict().items()})
    return out


def assert_same_weights(pipe, expected: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    got = state(pipe)
    assert set(got) == set(expected), sorted(set(got) ^ set(expected))[:5]
    for k, v in expected.items():
        if atol == 0:
            assert torch.equal(got[k], v.float()), k
        else:
            err = float((got[k] - v.float()).abs().max()) if v.numel() else 0.0
            assert err <= atol, (k, err)


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def perturbed_pipe(names_like: str | None = None, amount: float = 0.01, seed: int = 1):
    """A copy of the testbed with noise added to every parameter (or those whose name contains ``names_like``)."""
    pipe = fresh_pipe()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for comp in ("text_encoder", "unet"):
            for name, p in getattr(pipe, comp).named_parameters():
                if names_like is None or names_like in f"{comp}.{name}":
                    p.add_(amount * torch.randn(p.shape, generator=g))
    return pipe


def tiny_vae():
    """An AutoencoderKL whose latents fit the pixel-space testbed U-Net (3 channels)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(3)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(8,),
        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        layers_per_block=1, norm_num_groups=8, sample_size=16,
    )


@functools.lru_cache(maxsize=None)
def vae_pipe_and_folder():
    """A testbed-shaped pipeline *with* a VAE, saved as a real SD-style diffusers folder."""
    from eebguard.models.formats import assemble

    base = fresh_pipe()
    pipe = assemble(base.text_encoder, base.tokenizer, base.unet, base.scheduler, tiny_vae())
    out = workdir() / "with_vae"
    pipe.save_pretrained(out, safe_serialization=True)
    return pipe, out


# ---------------------------------------------------------------- safetensors surgery


def read_raw(path: Path) -> tuple[dict, bytes]:
    """(header dict, data bytes) of a safetensors file, without any validation."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_raw(path: Path, header: dict | bytes, data: bytes, header_len: int | None = None) -> Path:
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(hb) if header_len is None else header_len
    Path(path).write_bytes(struct.pack("<Q", n) + hb + data)
    return Path(path)


def save_state(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return Path(path)


def module_state(pipe, comp: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in getattr(pipe, comp).state_dict().items()}


# ---------------------------------------------------------------- pickles


class Evil:
    """Unpickling this (unrestricted) would create ``marker``: the payload a hostile checkpoint carries."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def write_evil_pickles(folder: Path, marker: Path) -> list[Path]:
    """The same payload as a raw pickle (.ckpt), inside torch.save's zip (.pt), and disguised as .safetensors."""
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": {"w": torch.zeros(2), "evil": Evil(marker)}}
    raw = folder / "evil.ckpt"
    raw.write_bytes(pickle.dumps(payload, protocol=4))
    zipped = folder / "evil.pt"
    torch.save(payload, zipped)
    disguised = folder / "evil.safetensors"
    shutil.copyfile(zipped, disguised)
    return [raw, zipped, disguised]


# ---------------------------------------------------------------- CompVis/LDM layout (inverse of diffusers' converter)

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _unet_prefix_map(cfg) -> dict[str, str]:
    """diffusers module prefix -> LDM module prefix for an SD-style UNet2DConditionModel config."""
    n, per = len(cfg["block_out_channels"]), cfg["layers_per_block"]
    m = dict(_TOP)
    k = 1
    for i, btype in enumerate(cfg["down_block_types"]):
        for j in range(per):
            m[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{k}.0"
            if "CrossAttn" in btype:
                m[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{k}.1"
            k += 1
        if i < n - 1:
            m[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{k}.0.op"
            k += 1
    m["mid_block.resnets.0"] = "middle_block.0"
    m["mid_block.attentions.0"] = "middle_block.1"
    m["mid_block.resnets.1"] = "middle_block.2"
    k = 0
    for i, btype in enumerate(cfg["up_block_types"]):
        attn = "CrossAttn" in btype
        for j in range(per + 1):
            m[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{k}.0"
            if attn:
                m[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{k}.1"
            if j == per and i < n - 1:
                m[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{k}.{2 if attn else 1}.conv"
            k += 1
    return m


def to_ldm(pipe) -> dict[str, torch.Tensor]:
    """The pipeline's U-Net and text encoder in original CompVis/LDM key names (SD 1.x layout)."""
    cfg = dict(pipe.unet.config)
    prefixes = sorted(_unet_prefix_map(cfg).items(), key=lambda kv: -len(kv[0]))
    out = {}
    for key, v in pipe.unet.state_dict().items():
        for dif, ldm in prefixes:
            if key.startswith(dif + "."):
                rest = key[len(dif) + 1 :]
                if ".resnets." in dif:
                    for a, b in _RESNET:
                        if rest.startswith(a + "."):
                            rest = b + rest[len(a) :]
                            break
                out[f"model.diffusion_model.{ldm}.{rest}"] = v.detach().clone()
                break
        else:
            raise KeyError(f"no LDM name for {key}")
    for key, v in pipe.text_encoder.state_dict().items():
        # LDM checkpoints predate transformers 5: CLIP weights sit under .text_model
        out[f"cond_stage_model.transformer.text_model.{key}"] = v.detach().clone()
    if getattr(pipe, "vae", None) is not None:
        out.update({f"first_stage_model.{k}": v for k, v in vae_to_ldm(pipe.vae).items()})
    out["alphas_cumprod"] = torch.linspace(1, 0, 10)  # schedule buffers real checkpoints carry
    return out


_VAE_ATTN = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out."))


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    """An AutoencoderKL in LDM ``first_stage_model`` names (attention projections as 1x1 convs)."""
    n = len(vae.config.block_out_channels)
    prefixes = {"encoder.conv_norm_out.": "encoder.norm_out.", "decoder.conv_norm_out.": "decoder.norm_out."}
    for part in ("encoder", "decoder"):
        for k in range(2):
            prefixes[f"{part}.mid_block.resnets.{k}."] = f"{part}.mid.block_{k + 1}."
    for i in range(n):
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = f"encoder.down.{i}.downsample.conv."
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = f"decoder.up.{n - 1 - i}.upsample.conv."
        for j in range(vae.config.layers_per_block + 1):
            prefixes[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
            prefixes[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{n - 1 - i}.block.{j}."
    out = {}
    for key, v in vae.state_dict().items():
        v = v.detach().clone()
        new = key
        for dif, ldm in sorted(prefixes.items(), key=lambda kv: -len(kv[0])):
            if key.startswith(dif):
                new = ldm + key[len(dif):].replace("conv_shortcut", "nin_shortcut")
                break
        if ".mid_block.attentions.0." in key:
            part, rest = key.split(".mid_block.attentions.0.")
            for a, b in _VAE_ATTN:
                if rest.startswith(a):
                    rest = b + rest[len(a):]
            new = f"{part}.mid.attn_1.{rest}"
            if v.dim() == 2:
                v = v[:, :, None, None]
        out[new] = v
    return out


# ---------------------------------------------------------------- LoRA

LORA_TARGETS = {
    "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k": "linear",
    "unet.down_blocks.0.attentions.0.proj_in": "conv1x1",
    "unet.conv_in": "conv3x3",
    "text_encoder.encoder.layers.0.self_attn.q_proj": "linear",
}


def lora_tensors(pipe, rank: int = 2, seed: int = 5) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (down, up)} for LORA_TARGETS, shaped for the module."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in LORA_TARGETS:
        comp, _, mod = name.partition(".")
        w = dict(getattr(pipe, comp).named_modules())[mod].weight
        if w.dim() == 2:
            down, up = torch.randn(rank, w.shape[1], generator=g), torch.randn(w.shape[0], rank, generator=g)
        else:
            down = torch.randn(rank, w.shape[1], *w.shape[2:], generator=g)
            up = torch.randn(w.shape[0], rank, 1, 1, generator=g)
        out[name] = (0.1 * down, 0.1 * up)
    return out


def merged_expectation(pipe, lora: dict, alphas: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """What W + alpha/rank * up @ down gives, computed here independently of the loader."""
    expected = state(pipe)
    for name, (down, up) in lora.items():
        rank = down.shape[0]
        scale = (alphas or {}).get(name, rank) / rank
        w = expected[name + ".weight"]
        expected[name + ".weight"] = w + scale * (up.flatten(1) @ down.flatten(1)).reshape(w.shape)
    return expected


def write_lora_peft(lora: dict, path: Path, alphas: dict[str, float] | None = None) -> Path:
    """diffusers/peft layout; the text encoder uses transformers-4 names (``text_model.``) as real files do."""
    t = {}
    for name, (down, up) in lora.items():
        key = name.replace("text_encoder.", "text_encoder.text_model.", 1)
        t[f"{key}.lora_A.weight"], t[f"{key}.lora_B.weight"] = down, up
        if alphas and name in alphas:
            t[f"{key}.alpha"] = torch.tensor(float(alphas[name]))
    return save_state(t, path)


def write_lora_kohya(lora: dict, path: Path, alphas: dict[str, float]) -> Path:
    t = {}
    for name, (down, up) in lora.items():
        comp, _, mod = name.partition(".")
        stem = "lora_unet_" + mod.replace(".", "_") if comp == "unet" else "lora_te_text_model_" + mod.replace(".", "_")
        t[f"{stem}.lora_down.weight"], t[f"{stem}.lora_up.weight"] = down, up
        t[f"{stem}.alpha"] = torch.tensor(float(alphas[name]))
    return save_state(t, path)


# ---------------------------------------------------------------- hub cache


def make_hub_cache(cache: Path, repo: str, folder: Path, commit: str = "0123456789abcdef0123456789abcdef01234567"
                   ) -> str:
    """The real cache layout: blobs by content hash, snapshots/<commit>/ of relative symlinks, refs/main."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    blobs, snap = repo_dir / "blobs", repo_dir / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    for f in sorted(folder.rglob("*")):
        if not f.is_file():
            continue
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blobs / digest)
        link = snap / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blobs / digest, link.parent), link)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return commit


def assert_one_line(err) -> None:
    msg = str(err.value if hasattr(err, "value") else err)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    assert len(msg) <= 400
