"""eebguard.models: every supported format loads, and the loaded weights equal the source weights."""
from __future__ import annotations

import json

import pytest
import torch

import model_builders as mb
from eebguard.models import (
    LoadedModel,
    NeedsBase,
    UnknownLoraTarget,
    load,
    save_single_file,
)


def test_diffusers_folder_fp32_is_exact(pipe, folder):
    m = load(folder)
    assert isinstance(m, LoadedModel)
    assert m.pipe.vae is None and not m.pipe.unet.training
    mb.assert_same_weights(m.pipe, mb.state(pipe))
    assert m.identity["kind"] == "diffusers" and m.identity["revision"] is None and m.identity["base"] is None
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"} <= set(
        m.identity["files"]
    )


def test_diffusers_folder_fp16_files_upcast(pipe):
    m = load(mb.testbed_folder_fp16())
    assert m.pipe.unet.dtype == torch.float32 and m.pipe.text_encoder.dtype == torch.float32
    mb.assert_same_weights(m.pipe, {k: v.half().float() for k, v in mb.state(pipe).items()})


def test_folder_also_loads_with_plain_diffusers(folder):
    from diffusers import StableDiffusionPipeline

    from eebguard.lab.testbed.build import PIXEL_PIPELINE_KWARGS

    plain = StableDiffusionPipeline.from_pretrained(folder, **PIXEL_PIPELINE_KWARGS)
    ours = load(folder)
    mb.assert_same_weights(ours.pipe, mb.state(plain))


def test_dtype_argument(folder, pipe):
    m = load(folder, dtype=torch.float16)
    assert m.pipe.unet.dtype == torch.float16 and m.pipe.text_encoder.dtype == torch.float16
    assert torch.equal(m.pipe.unet.conv_in.weight, pipe.unet.conv_in.weight.half())


def test_real_sd_folder_with_vae():
    vae_pipe, vae_folder = mb.vae_pipe_and_folder()
    index = json.loads((vae_folder / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    m = load(vae_folder)
    assert m.pipe.vae is not None
    mb.assert_same_weights(m.pipe, mb.state(vae_pipe))


def test_single_file_ldm_round_trip(pipe, folder, tmp_path):
    path = mb.save_state(mb.to_ldm(pipe), tmp_path / "sd-v1.safetensors")
    m = load(path, base=folder)
    assert m.identity["kind"] == "ldm" and m.identity["base"]["kind"] == "diffusers"
    mb.assert_same_weights(m.pipe, mb.state(pipe))


def test_single_file_ldm_with_vae_round_trip(tmp_path):
    vae_pipe, vae_folder = mb.vae_pipe_and_folder()
    path = mb.save_state(mb.to_ldm(vae_pipe), tmp_path / "sd-v1-vae.safetensors")
    m = load(path, base=vae_folder)
    assert m.pipe.vae is not None
    mb.assert_same_weights(m.pipe, mb.state(vae_pipe))


def test_single_file_ldm_needs_a_base(pipe, tmp_path):
    path = mb.save_state(mb.to_ldm(pipe), tmp_path / "sd-v1.safetensors")
    with pytest.raises(NeedsBase) as e:
        load(path)
    mb.assert_one_line(e)


def test_single_file_flat_with_stored_configs(pipe, tmp_path):
    path = save_single_file(pipe, tmp_path / "flat.safetensors")
    m = load(path)  # no base: architecture, scheduler and tokenizer length come from the metadata
    assert m.identity["kind"] == "flat" and m.identity["base"] is None
    mb.assert_same_weights(m.pipe, mb.state(pipe))
    assert m.pipe.tokenizer.model_max_length == pipe.tokenizer.model_max_length


def test_single_file_flat_over_base(folder, tmp_path):
    changed = mb.perturbed_pipe()
    path = save_single_file(changed, tmp_path / "flat.safetensors", dtype=torch.float16, configs=False)
    with pytest.raises(NeedsBase):
        load(path)
    m = load(path, base=folder)
    mb.assert_same_weights(m.pipe, {k: v.half().float() for k, v in mb.state(changed).items()})


def test_component_folder_over_base(pipe, folder, tmp_path):
    changed = mb.perturbed_pipe()
    changed.unet.save_pretrained(tmp_path / "unet")
    m = load(tmp_path / "unet", base=folder)
    assert m.identity["kind"] == "component"
    expected = mb.state(pipe)
    expected.update({k: v for k, v in mb.state(changed).items() if k.startswith("unet.")})
    mb.assert_same_weights(m.pipe, expected)


def test_folder_of_components_over_base(pipe, folder, tmp_path):
    changed = mb.perturbed_pipe()
    changed.text_encoder.save_pretrained(tmp_path / "release" / "text_encoder")
    m = load(tmp_path / "release", base=folder)
    expected = mb.state(pipe)
    expected.update({k: v for k, v in mb.state(changed).items() if k.startswith("text_encoder.")})
    mb.assert_same_weights(m.pipe, expected)
    assert "text_encoder/model.safetensors" in m.identity["files"]


def test_component_single_file_matched_by_keys(pipe, folder, tmp_path):
    changed = mb.perturbed_pipe()
    path = mb.save_state(mb.module_state(changed, "unet"), tmp_path / "unet-only.safetensors")
    m = load(path, base=folder)
    expected = mb.state(pipe)
    expected.update({k: v for k, v in mb.state(changed).items() if k.startswith("unet.")})
    mb.assert_same_weights(m.pipe, expected)


def test_lora_peft_layout(pipe, folder, tmp_path):
    lora = mb.lora_tensors(pipe)
    alphas = {"unet.conv_in": 1.0}  # one module with an explicit alpha, the rest default to scale 1
    path = mb.write_lora_peft(lora, tmp_path / "lora.safetensors", alphas)
    m = load(path, base=folder)
    assert m.identity["kind"] == "lora"
    mb.assert_same_weights(m.pipe, mb.merged_expectation(pipe, lora, alphas), atol=1e-6)


def test_lora_kohya_layout(pipe, folder, tmp_path):
    lora = mb.lora_tensors(pipe, rank=4)
    alphas = {name: 2.0 for name in lora}
    path = mb.write_lora_kohya(lora, tmp_path / "kohya.safetensors", alphas)
    m = load(path, base=folder)
    mb.assert_same_weights(m.pipe, mb.merged_expectation(pipe, lora, alphas), atol=1e-6)


def test_lora_unknown_target(pipe, folder, tmp_path):
    t = {"unet.down_blocks.9.nope.lora_A.weight": torch.zeros(2, 8), "unet.down_blocks.9.nope.lora_B.weight":
         torch.zeros(8, 2)}
    path = mb.save_state(t, tmp_path / "bad-lora.safetensors")
    with pytest.raises(UnknownLoraTarget) as e:
        load(path, base=folder)
    mb.assert_one_line(e)
    assert "down_blocks.9.nope" in str(e.value)


def test_loaded_object_is_wrapped(pipe):
    own = mb.fresh_pipe()
    m = load(own)
    assert m.pipe is own and m.identity["kind"] == "object"
    assert m.identity == load(mb.fresh_pipe()).identity  # same weights, same identity
    assert load(m) is m


def test_identity_is_content_addressed(folder, tmp_path):
    a = load(folder).identity
    b = load(mb.copy_folder(folder, tmp_path / "elsewhere")).identity
    assert a["digest"] == b["digest"] and a["files"] == b["files"] and a["source"] != b["source"]
    changed = mb.perturbed_pipe("conv_in")
    changed.unet.save_pretrained(tmp_path / "elsewhere" / "unet")
    assert load(tmp_path / "elsewhere").identity["digest"] != a["digest"]


def test_loaded_pipelines_sample(pipe, folder, tmp_path):
    from eebguard.sampling import sample

    ref = sample(load(folder).pipe, ["a photo of a cat"], steps=2, seed=0)
    flat = load(save_single_file(pipe, tmp_path / "flat.safetensors")).pipe  # default tokenizer, metadata configs
    assert ref.shape == (1, 3, 16, 16) and torch.equal(ref, sample(flat, ["a photo of a cat"], steps=2, seed=0))
