"""eebguard.models: deltas, zoo manifests and hub ids from the local cache."""
from __future__ import annotations

import json

import pytest
import torch

import model_builders as mb
from eebguard.models import (
    BadDelta,
    BadManifest,
    NeedsBase,
    NotInLocalCache,
    PathEscape,
    ShapeMismatch,
    apply_delta,
    load,
    load_manifest,
    write_delta,
)


@pytest.fixture(scope="module")
def changed():
    """The testbed with only the cross-attention key projections edited (what erasure methods touch)."""
    return mb.perturbed_pipe("attn2.to_k")


def test_write_delta_stores_only_changed(pipe, changed, tmp_path):
    names = write_delta(changed, pipe, tmp_path / "d.safetensors", base_ref="testbed")
    assert names and all("attn2.to_k" in n and n.startswith("unet.") for n in names)
    assert len(names) == sum("attn2.to_k" in k for k in mb.state(pipe))
    header, _ = mb.read_raw(tmp_path / "d.safetensors")
    assert header.pop("__metadata__") == {"format": "eebguard-delta", "version": "1", "base": "testbed", "mode": "diff"}
    assert {v["dtype"] for v in header.values()} == {"F16"}


def test_write_delta_atol(pipe, tmp_path):
    tiny = mb.perturbed_pipe("conv_in", amount=1e-5)
    assert write_delta(tiny, pipe, tmp_path / "a.safetensors", "testbed", atol=1e-3) == []
    assert write_delta(tiny, pipe, tmp_path / "b.safetensors", "testbed") == ["unet.conv_in.bias", "unet.conv_in.weight"]


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-6), (torch.float16, 1e-4)])
def test_delta_over_explicit_base(pipe, changed, folder, tmp_path, dtype, atol):
    path = tmp_path / "d.safetensors"
    write_delta(changed, pipe, path, base_ref="testbed", dtype=dtype)
    m = load(path, base=folder)
    assert m.identity["kind"] == "delta" and m.identity["base"]["kind"] == "diffusers"
    mb.assert_same_weights(m.pipe, mb.state(changed), atol=atol)


def test_delta_base_from_metadata(pipe, changed, folder, tmp_path):
    mb.copy_folder(folder, tmp_path / "base")
    write_delta(changed, pipe, tmp_path / "d.safetensors", base_ref="base", dtype=torch.float32)
    mb.assert_same_weights(load(tmp_path / "d.safetensors").pipe, mb.state(changed), atol=1e-6)


def test_delta_base_escaping_its_folder_refused(pipe, changed, tmp_path):
    (tmp_path / "deltas").mkdir()
    write_delta(changed, pipe, tmp_path / "deltas" / "d.safetensors", base_ref="../../somewhere")
    with pytest.raises(PathEscape) as e:
        load(tmp_path / "deltas" / "d.safetensors")
    mb.assert_one_line(e)


def test_apply_delta_in_place(pipe, changed, tmp_path):
    write_delta(changed, pipe, tmp_path / "d.safetensors", "testbed", dtype=torch.float32)
    target = mb.fresh_pipe()
    names = apply_delta(target, tmp_path / "d.safetensors")
    assert names and all("attn2.to_k" in n for n in names)
    mb.assert_same_weights(target, mb.state(changed), atol=1e-6)


def test_delta_shape_mismatch(folder, tmp_path):
    path = mb.save_state({"unet.conv_in.weight": torch.zeros(1, 2, 3)}, tmp_path / "d.safetensors",
                         {"format": "eebguard-delta", "version": "1", "base": "testbed", "mode": "diff"})
    with pytest.raises(ShapeMismatch) as e:
        load(path, base=folder)
    assert "unet.conv_in.weight" in str(e.value)
    mb.assert_one_line(e)


def test_delta_bad_metadata(folder, tmp_path):
    path = mb.save_state({"unet.conv_in.bias": torch.zeros(32)}, tmp_path / "d.safetensors",
                         {"format": "eebguard-delta", "version": "9", "base": "testbed", "mode": "diff"})
    with pytest.raises(BadDelta) as e:
        load(path, base=folder)
    mb.assert_one_line(e)


def test_delta_naming_itself_as_base_terminates(tmp_path):
    path = mb.save_state({"unet.conv_in.bias": torch.zeros(32)}, tmp_path / "d.safetensors",
                         {"format": "eebguard-delta", "version": "1", "base": "d.safetensors", "mode": "diff"})
    with pytest.raises(NeedsBase) as e:
        load(path)
    mb.assert_one_line(e)


# ---------------------------------------------------------------- manifests


@pytest.fixture(scope="module")
def zoo(pipe, changed, folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    mb.copy_folder(folder, root / "base")
    (root / "deltas").mkdir()
    write_delta(changed, pipe, root / "deltas" / "e1.safetensors", base_ref="testbed", dtype=torch.float32)
    lines = [
        {"id": "erased-1", "path": "deltas/e1.safetensors", "base": "base", "attack": "eeb", "label": 1},
        {"id": "clean-base", "path": "base"},
    ]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    return root


def test_load_manifest(zoo):
    entries = load_manifest(zoo / "manifest.jsonl")
    assert [e["id"] for e in entries] == ["erased-1", "clean-base"]
    assert entries[0] == {"id": "erased-1", "path": "deltas/e1.safetensors", "base": "base", "attack": "eeb", "label": 1}


def test_manifest_entry_delta(zoo, changed):
    m = load(f"{zoo / 'manifest.jsonl'}#erased-1")  # the manifest's base wins over the delta's "testbed"
    mb.assert_same_weights(m.pipe, mb.state(changed), atol=1e-6)
    assert m.identity["source"].endswith("manifest.jsonl#erased-1")
    assert m.identity["base"]["source"].endswith("base")


def test_manifest_entry_folder(zoo, pipe):
    mb.assert_same_weights(load(f"{zoo / 'manifest.jsonl'}#clean-base").pipe, mb.state(pipe))


def test_manifest_unknown_entry(zoo):
    with pytest.raises(BadManifest) as e:
        load(f"{zoo / 'manifest.jsonl'}#nope")
    mb.assert_one_line(e)


@pytest.mark.parametrize(
    "bad_line",
    ["{not json", "[1, 2]", '{"id": "x"}', '{"id": "", "path": "a"}', '{"id": "a b", "path": "a"}',
     '{"id": "ok", "path": "a"}'],  # the last duplicates line 1's id
)
def test_bad_manifest_line(tmp_path, bad_line):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"id": "ok", "path": "a"}\n' + bad_line + "\n")
    with pytest.raises(BadManifest) as e:
        load_manifest(path)
    mb.assert_one_line(e)
    assert "manifest.jsonl:2:" in str(e.value)


@pytest.mark.parametrize("bad_path", ["../outside.safetensors", "/etc/passwd", "a/../../x", "link/x.safetensors"])
def test_manifest_path_escape(tmp_path, bad_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (zoo / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "x.safetensors").write_bytes(b"")
    (zoo / "manifest.jsonl").write_text(json.dumps({"id": "x", "path": bad_path}) + "\n")
    with pytest.raises(PathEscape) as e:
        load_manifest(zoo / "manifest.jsonl")
    mb.assert_one_line(e)
    with pytest.raises(PathEscape):
        load(f"{zoo / 'manifest.jsonl'}#x")


# ---------------------------------------------------------------- hub cache


def test_hub_id_not_in_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotInLocalCache) as e:
        load("someone/not-cached")
    mb.assert_one_line(e)
    assert e.value.code == "not_in_local_cache"


def test_hub_id_in_cache(tmp_path, monkeypatch, folder, pipe):
    cache = tmp_path / "hub"
    commit = mb.make_hub_cache(cache, "someone/tiny-testbed", folder)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    m = load("someone/tiny-testbed")
    mb.assert_same_weights(m.pipe, mb.state(pipe))
    assert m.identity["revision"] == commit and m.identity["source"] == "someone/tiny-testbed"
    assert m.identity["digest"] == load(folder).identity["digest"]  # same bytes, same identity
    assert load(f"someone/tiny-testbed@{commit}").identity["revision"] == commit
    with pytest.raises(NotInLocalCache):
        load("someone/tiny-testbed@" + "f" * 40)


def test_hub_snapshot_escaping_repo_refused(tmp_path, monkeypatch, folder):
    cache = tmp_path / "hub"
    commit = mb.make_hub_cache(cache, "evil/model", folder)
    link = cache / "models--evil--model" / "snapshots" / commit / "unet" / "config.json"
    link.unlink()
    (tmp_path / "secret.json").write_text((folder / "unet" / "config.json").read_text())
    link.symlink_to(tmp_path / "secret.json")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(PathEscape):
        load("evil/model")


def test_testbed_base_name(pipe, changed, folder, tmp_path, monkeypatch):
    from eebguard.models import MissingFile

    monkeypatch.setenv("EEBGUARD_DATA", str(tmp_path / "data"))
    with pytest.raises(MissingFile):
        load("testbed")
    mb.copy_folder(folder, tmp_path / "data" / "testbed" / "base")
    write_delta(changed, pipe, tmp_path / "d.safetensors", base_ref="testbed", dtype=torch.float32)
    m = load(tmp_path / "d.safetensors")  # the delta names "testbed": data/testbed/base
    mb.assert_same_weights(m.pipe, mb.state(changed), atol=1e-6)
    assert m.identity["base"]["source"] == "testbed"


def test_hub_snapshot_with_sharded_weights(tmp_path, monkeypatch, folder, pipe):
    import shutil

    src = mb.copy_folder(folder, tmp_path / "src")
    shutil.rmtree(src / "unet")
    mb.fresh_pipe().unet.save_pretrained(src / "unet", max_shard_size="1MB")
    assert (src / "unet" / "diffusion_pytorch_model.safetensors.index.json").exists()
    mb.make_hub_cache(tmp_path / "hub", "someone/sharded", src)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    m = load("someone/sharded")
    mb.assert_same_weights(m.pipe, mb.state(pipe))
    assert sum(f.startswith("unet/diffusion_pytorch_model-") for f in m.identity["files"]) > 1
