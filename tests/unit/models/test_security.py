"""eebguard.models on hostile inputs: each case raises its specific ModelLoadError with a one-line message."""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

import model_builders as mb
from eebguard.models import (
    ALL_ERRORS,
    BadConfig,
    CorruptWeights,
    DtypeMismatch,
    MissingFile,
    MissingWeights,
    ModelLoadError,
    NonFiniteWeights,
    PathEscape,
    PickleRefused,
    ShapeMismatch,
    SpecialFile,
    UnexpectedWeights,
    UnsupportedFormat,
    load,
)

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
TE_FILE = "text_encoder/model.safetensors"


@pytest.fixture
def copy(folder, tmp_path):
    """A private copy of the testbed folder to damage."""
    return mb.copy_folder(folder, tmp_path / "model")


def raises(exc, *args, **kwargs):
    with pytest.raises(exc) as e:
        load(*args, **kwargs)
    mb.assert_one_line(e)
    assert e.value.code and isinstance(e.value, ModelLoadError)
    return e.value


def test_error_classes_have_distinct_codes():
    codes = [c.code for c in ALL_ERRORS]
    assert len(codes) == len(set(codes)) and all(issubclass(c, ModelLoadError) for c in ALL_ERRORS)


# ---------------------------------------------------------------- pickles


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt"])
def test_pickle_refused_by_default(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save({"w": torch.zeros(2)}, path)  # harmless content: refused for what it is, not what it holds
    err = raises(PickleRefused, path)
    assert err.code == "pickle_refused" and str(path) in str(err)


def test_disguised_pickle_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    raises(PickleRefused, path)


def test_pickle_weights_inside_folder_refused(copy):
    (copy / UNET_FILE).unlink()
    torch.save(mb.module_state(mb.testbed_pipe(), "unet"), copy / "unet" / "diffusion_pytorch_model.bin")
    raises(PickleRefused, copy)


@pytest.mark.parametrize("allow", [False, True])
def test_malicious_reduce_never_runs(tmp_path, allow):
    marker = tmp_path / "pwned"
    paths = mb.write_evil_pickles(tmp_path / "files", marker)
    for path in paths:
        raises(PickleRefused, path, allow_pickle=allow)
        assert not marker.exists(), path
    # control: the payload is live, so the assertions above are not vacuous
    import pickle

    with open(paths[0], "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_allow_pickle_folder_is_converted(copy):
    pipe = mb.testbed_pipe()
    (copy / UNET_FILE).unlink()
    torch.save(mb.module_state(pipe, "unet"), copy / "unet" / "diffusion_pytorch_model.bin")
    m = load(copy, allow_pickle=True)
    mb.assert_same_weights(m.pipe, mb.state(pipe))
    assert "unet/diffusion_pytorch_model.bin" in m.identity["files"]


def test_allow_pickle_uses_restricted_loader(tmp_path):
    pipe = mb.testbed_pipe()
    path = tmp_path / "sd-v1.ckpt"
    torch.save({"state_dict": mb.to_ldm(pipe), "global_step": 7}, path)
    m = load(path, base=mb.testbed_folder(), allow_pickle=True)
    mb.assert_same_weights(m.pipe, mb.state(pipe))
    assert list(m.identity["files"]) == ["sd-v1.ckpt"]


# ---------------------------------------------------------------- safetensors headers


def test_truncated_safetensors(copy):
    f = copy / UNET_FILE
    f.write_bytes(f.read_bytes()[:-1000])
    err = raises(CorruptWeights, copy)
    assert "diffusion_pytorch_model.safetensors" in str(err)


def test_corrupt_header_json(copy):
    f = copy / UNET_FILE
    header, data = mb.read_raw(f)
    hb = json.dumps(header).encode()
    mb.write_raw(f, b"{" + b"\xff" * (len(hb) - 2) + b"}", data)
    raises(CorruptWeights, copy)


def test_header_length_absurd(tmp_path):
    path = mb.write_raw(tmp_path / "x.safetensors", b"{}", b"", header_len=2**62)
    err = raises(CorruptWeights, path)
    assert "header length" in str(err)


def test_offsets_out_of_range(copy):
    f = copy / UNET_FILE
    header, data = mb.read_raw(f)
    header["conv_in.bias"]["data_offsets"][1] = len(data) + 4096
    mb.write_raw(f, header, data)
    raises(CorruptWeights, copy)


def test_overlapping_offsets(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    raises(CorruptWeights, mb.write_raw(tmp_path / "x.safetensors", header, bytes(12)))


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, os.urandom(4096), b"{" * 64])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    raises(CorruptWeights, path)


# ---------------------------------------------------------------- weights vs config


def test_shape_mismatch_vs_config(copy):
    cfg_path = copy / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["in_channels"] = 4
    cfg_path.write_text(json.dumps(cfg))
    err = raises(ShapeMismatch, copy)
    assert "unet.conv_in.weight" in str(err) and not isinstance(err, DtypeMismatch)


def test_dtype_mismatch(copy):
    sd = mb.module_state(mb.testbed_pipe(), "unet")
    sd["conv_in.bias"] = sd["conv_in.bias"].to(torch.int32)
    mb.save_state(sd, copy / UNET_FILE)
    err = raises(DtypeMismatch, copy)
    assert "unet.conv_in.bias" in str(err) and err.code == "dtype_mismatch"


def test_missing_parameter(copy):
    sd = mb.module_state(mb.testbed_pipe(), "unet")
    del sd["conv_out.bias"]
    mb.save_state(sd, copy / UNET_FILE)
    assert "unet.conv_out.bias" in str(raises(MissingWeights, copy))


def test_unexpected_tensor(copy):
    sd = mb.module_state(mb.testbed_pipe(), "text_encoder")
    sd["hidden_payload"] = torch.zeros(16)
    mb.save_state(sd, copy / TE_FILE)
    assert "hidden_payload" in str(raises(UnexpectedWeights, copy))


@pytest.mark.parametrize("value,kind", [(float("nan"), "NaN"), (float("inf"), "Inf")])
def test_non_finite_weights(copy, value, kind):
    sd = mb.module_state(mb.testbed_pipe(), "text_encoder")
    sd["encoder.layers.1.mlp.fc1.weight"][3, 5] = value
    mb.save_state(sd, copy / TE_FILE)
    err = raises(NonFiniteWeights, copy)
    assert "text_encoder.encoder.layers.1.mlp.fc1.weight" in str(err) and kind in str(err)


def test_fp32_weight_overflowing_fp16_is_caught(copy):
    sd = mb.module_state(mb.testbed_pipe(), "unet")
    sd["conv_in.weight"][0, 0, 0, 0] = 1e6
    mb.save_state(sd, copy / UNET_FILE)
    load(copy)  # fine in fp32
    assert "unet.conv_in.weight" in str(raises(NonFiniteWeights, copy, dtype=torch.float16))


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "file,key,value",
    [
        ("text_encoder/config.json", "vocab_size", 10**12),
        ("text_encoder/config.json", "num_hidden_layers", 10**6),
        ("unet/config.json", "block_out_channels", [32, 64, 10**7]),
        ("unet/config.json", "sample_size", -16),
        ("scheduler/scheduler_config.json", "num_train_timesteps", 10**10),
        ("tokenizer/tokenizer_config.json", "model_max_length", 10**30),
    ],
)
def test_absurd_config_sizes_fail_fast(copy, file, key, value):
    path = copy / file
    cfg = json.loads(path.read_text())
    cfg[key] = value
    path.write_text(json.dumps(cfg))
    start = time.perf_counter()
    err = raises(BadConfig, copy)
    assert time.perf_counter() - start < 2.0  # refused before anything is built, let alone allocated
    assert key in str(err)


def test_config_not_an_object(copy):
    (copy / "unet" / "config.json").write_text("[1, 2, 3]")
    raises(BadConfig, copy)


def test_config_remote_code_key_refused(copy):
    path = copy / "text_encoder" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["auto_map"] = {"AutoModel": "evil.EvilModel"}
    path.write_text(json.dumps(cfg))
    assert "auto_map" in str(raises(BadConfig, copy))


@pytest.mark.parametrize(
    "key,value",
    [
        ("unet", ["os", "system"]),
        ("unet", ["evil_module", "UNet2DConditionModel"]),
        ("text_encoder", ["transformers", "AutoModel"]),
        ("_class_name", "MyCustomPipeline"),
        ("watermarker", ["diffusers", "UNet2DConditionModel"]),
    ],
)
def test_unknown_class_in_model_index(copy, key, value):
    index = json.loads((copy / "model_index.json").read_text())
    index[key] = value
    (copy / "model_index.json").write_text(json.dumps(index))
    raises(BadConfig, copy)


def test_model_index_pointing_outside(copy):
    index = json.loads((copy / "model_index.json").read_text())
    index["../unet"] = index["unet"]
    (copy / "model_index.json").write_text(json.dumps(index))
    raises(PathEscape, copy)


def test_weight_map_pointing_outside(copy, tmp_path):
    (copy / UNET_FILE).rename(tmp_path / "outside.safetensors")
    idx = {"metadata": {}, "weight_map": {"conv_in.weight": "../../outside.safetensors"}}
    (copy / "unet" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(idx))
    raises(PathEscape, copy)


def test_symlink_file_escape(copy, tmp_path):
    outside = tmp_path / "outside.safetensors"
    (copy / UNET_FILE).rename(outside)
    os.symlink(outside, copy / UNET_FILE)
    raises(PathEscape, copy)


def test_symlink_folder_escape(copy, tmp_path):
    outside = tmp_path / "outside_unet"
    (copy / "unet").rename(outside)
    os.symlink(outside, copy / "unet")
    raises(PathEscape, copy)


def test_fifo_does_not_hang(copy):
    (copy / UNET_FILE).unlink()
    os.mkfifo(copy / UNET_FILE)
    raises(SpecialFile, copy)


@pytest.mark.parametrize("victim", [UNET_FILE, "text_encoder", "scheduler/scheduler_config.json"])
def test_missing_component_file(copy, victim):
    import shutil

    target = copy / victim
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    raises(MissingFile, copy)


def test_missing_source():
    raises(MissingFile, "/nonexistent/model/folder")


def test_unsupported_formats(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + bytes(64))
    raises(UnsupportedFormat, tmp_path / "model.gguf")
    (tmp_path / "empty").mkdir()
    raises(UnsupportedFormat, tmp_path / "empty")
    raises(UnsupportedFormat, 42)


# ---------------------------------------------------------------- more hostile inputs


def test_third_party_failure_is_wrapped(copy):
    from eebguard.models import LoadFailed

    (copy / "tokenizer" / "tokenizer.json").write_text('{"this is": "not a tokenizer"}')
    err = raises(LoadFailed, copy)
    assert err.code == "load_failed" and err.detail and "Traceback" not in str(err)


def test_duplicate_json_keys_refused(copy):
    text = (copy / "unet" / "config.json").read_text()
    (copy / "unet" / "config.json").write_text(text.replace("{", '{"in_channels": 3, ', 1))
    assert "duplicate" in str(raises(BadConfig, copy))


def test_tokenizer_class_not_allowed(copy):
    path = copy / "tokenizer" / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "EvilTokenizer"
    path.write_text(json.dumps(cfg))
    raises(BadConfig, copy)


def test_adapter_config_in_folder_refused(copy):
    (copy / "unet" / "adapter_config.json").write_text('{"base_model_name_or_path": "someone/else"}')
    raises(BadConfig, copy)


def test_ldm_hidden_tensor_refused(tmp_path):
    sd = mb.to_ldm(mb.testbed_pipe())
    sd["model.diffusion_model.input_blocks.1.9.payload"] = torch.zeros(4)
    raises(UnexpectedWeights, mb.save_state(sd, tmp_path / "x.safetensors"), base=mb.testbed_folder())
    sd = mb.to_ldm(mb.testbed_pipe())
    sd["something_else.weight"] = torch.zeros(4)
    raises(UnexpectedWeights, mb.save_state(sd, tmp_path / "y.safetensors"), base=mb.testbed_folder())


def test_ldm_shape_mismatch(tmp_path):
    sd = mb.to_ldm(mb.testbed_pipe())
    sd["model.diffusion_model.out.2.weight"] = torch.zeros(3, 32, 1, 1)
    err = raises(ShapeMismatch, mb.save_state(sd, tmp_path / "x.safetensors"), base=mb.testbed_folder())
    assert "unet.conv_out.weight" in str(err)


def test_flat_metadata_configs_validated(tmp_path):
    from eebguard.models import save_single_file
    from safetensors import safe_open

    path = save_single_file(mb.testbed_pipe(), tmp_path / "flat.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfgs = json.loads(meta["eebguard_configs"])
    cfgs["text_encoder"]["vocab_size"] = 10**12
    meta["eebguard_configs"] = json.dumps(cfgs)
    assert "vocab_size" in str(raises(BadConfig, mb.save_state(tensors, tmp_path / "bad.safetensors", meta)))


def test_lora_factors_checked_before_multiplying(tmp_path):
    from eebguard.models import BadLora

    # would be a 200000 x 200000 matrix if multiplied before the shape check
    t = {"unet.conv_in.lora_A.weight": torch.zeros(1, 200_000), "unet.conv_in.lora_B.weight": torch.zeros(200_000, 1)}
    raises(ShapeMismatch, mb.save_state(t, tmp_path / "a.safetensors"), base=mb.testbed_folder())
    t = {"unet.conv_in.lora_A.weight": torch.zeros(1, 27), "unet.conv_in.lora_B.weight": torch.zeros(32, 1),
         "unet.conv_in.dora_scale": torch.zeros(32)}
    raises(BadLora, mb.save_state(t, tmp_path / "b.safetensors"), base=mb.testbed_folder())


def test_header_fuzz_only_raises_corrupt_weights(tmp_path):
    import random

    from eebguard.models.safety import read_safetensors_header

    src = mb.save_state({"a": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(4, dtype=torch.int64)},
                        tmp_path / "ok.safetensors")
    raw = src.read_bytes()
    rng = random.Random(0)
    for i in range(300):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(0, min(len(data), 160))] = rng.randrange(256)
        path = tmp_path / f"f{i}.safetensors"
        path.write_bytes(bytes(data))
        try:
            read_safetensors_header(path)
        except CorruptWeights as e:
            mb.assert_one_line(e)


@pytest.mark.parametrize(
    "key,value",
    [("_attn_implementation", "kernels-community/evil-attn"), ("to_dict", 1), ("auto_map", {"AutoModel": "x.Y"})],
)
def test_text_encoder_config_keys_that_change_code_paths(copy, key, value):
    path = copy / "text_encoder" / "config.json"
    cfg = json.loads(path.read_text())
    cfg[key] = value
    path.write_text(json.dumps(cfg))
    raises(BadConfig, copy)


def test_newlines_in_hostile_names_stay_one_line(copy):
    index = json.loads((copy / "model_index.json").read_text())
    index["evil\ncomponent\r\nline3"] = ["diffusers", "UNet2DConditionModel"]
    (copy / "model_index.json").write_text(json.dumps(index))
    raises(BadConfig, copy)
