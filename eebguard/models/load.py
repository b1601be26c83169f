"""``load()``: any supported input -> a verified ``StableDiffusionPipeline`` plus the content identity of its files.

Every path follows the same order: validate bytes and configs yourself, compare weight shapes against a
meta-device model built from the validated configs, only then let safetensors/diffusers/transformers read data,
and finally verify the live modules (shapes, dtype, finiteness).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eebguard.models.configs import (
    MODEL_COMPONENTS,
    check_entries,
    cross_check,
    expected_entries,
    instantiate,
    module_config,
    validate_config,
    validate_model_index,
    verify_pipeline,
    build_module,
    header_entries,
)
from eebguard.models.errors import (
    BadConfig,
    BadManifest,
    MissingFile,
    NeedsBase,
    UnsupportedFormat,
    wrap_errors,
)
from eebguard.models.formats import DELTA_FORMAT, FLAT_PREFIXES
from eebguard.models.identity import coverage, hash_files, make_identity, pipeline_identity
from eebguard.models.ldm import is_ldm
from eebguard.models.lora import is_lora
from eebguard.models.safety import (
    check_regular,
    is_pickle_file,
    list_files,
    load_pickle_state_dict,
    load_safetensors,
    looks_like_pickle,
    parse_json_object,
    read_json,
    read_safetensors_header,
    refuse_pickle,
    resolve_within,
    safe_name,
    safe_relpath,
)

#: weights file stem per component (diffusers models vs transformers models)
def classify_keys(keys, metadata: dict[str, str]) -> str:
    """'delta' | 'lora' | 'ldm' | 'flat' | 'component' for a single weights file."""
    keys = list(keys)
    if metadata.get("format") == DELTA_FORMAT:
        return "delta"
    if not keys:
        raise UnsupportedFormat("file holds no tensors")
    if is_lora(keys):
        return "lora"
    if is_ldm(keys):
        return "ldm"
    if all(k.startswith(FLAT_PREFIXES) for k in keys):
        return "flat"
    return "component"


WEIGHT_STEM = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
PICKLE_NAMES = {
    "unet": ("diffusion_pytorch_model.bin",),
    "vae": ("diffusion_pytorch_model.bin",),
    "text_encoder": ("pytorch_model.bin", "model.bin"),
}
MAX_TOKENIZER_FILE = 64 * 2**20
MAX_BASE_DEPTH = 8  # a delta over a delta over ... (guards against a file naming itself as its base)
LOADED_COMPONENTS = ("text_encoder", "tokenizer", "unet", "scheduler", "vae")


@dataclass
class LoadedModel:
    """A loaded, verified pipeline and the identity of what it was loaded from."""

    pipe: Any
    identity: dict
    root: Path | None = None  # the diffusers folder it came from, if any


@dataclass
class _Ctx:
    allow_pickle: bool
    depth: int = 0


def load(source, *, base=None, allow_pickle: bool = False, device="cpu", dtype: torch.dtype = torch.float32
         ) -> LoadedModel:
    """Load an untrusted text-to-image model (see the package docstring for the accepted ``source`` kinds).

    ``base``: the model a component/LoRA/delta/single-file checkpoint applies to (same kinds as ``source``;
    ``"testbed"`` = ``data/testbed/base``). Pickles are refused unless ``allow_pickle`` (then only torch's
    restricted ``weights_only`` unpickler runs). An already-loaded pipeline is moved to ``device``/``dtype`` in place.
    Raises a ``ModelLoadError`` subclass with a one-line message for anything malformed or hostile.
    """
    where = _display(source)
    with wrap_errors(f"{where}: load failed"):
        model = _load(source, base, _Ctx(allow_pickle))
        for comp in MODEL_COMPONENTS:
            module = getattr(model.pipe, comp, None)
            if module is not None:
                module.to(device=device, dtype=dtype)
                module.eval()
        # last: an fp32 weight beyond fp16 range only turns into Inf here
        verify_pipeline(model.pipe, where, dtype)
        return model


# ---------------------------------------------------------------- dispatch


def _display(source) -> str:
    if isinstance(source, LoadedModel):
        return source.identity.get("source", "<loaded model>")
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"<{type(source).__name__}>"


def _is_pipeline(obj) -> bool:
    from diffusers import DiffusionPipeline

    return isinstance(obj, DiffusionPipeline) and all(
        hasattr(obj, c) for c in ("unet", "text_encoder", "tokenizer", "scheduler")
    )


def testbed_base_path() -> Path:
    from eebguard.paths import data_path

    return data_path("testbed", "base")


def _load(source, base, ctx: _Ctx, confine: Path | None = None) -> LoadedModel:
    from eebguard.models.hub import parse_hub_id
    from eebguard.models.manifest import split_entry_ref

    if ctx.depth > MAX_BASE_DEPTH:
        raise NeedsBase(f"{_display(source)}: chain of bases deeper than {MAX_BASE_DEPTH}")
    if isinstance(source, LoadedModel):
        return source
    if not isinstance(source, (str, os.PathLike)) and _is_pipeline(source):
        return LoadedModel(source, pipeline_identity(source))
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source:
        raise UnsupportedFormat(f"{_display(source)}: cannot load a {type(source).__name__}")
    if source == "testbed":
        path = testbed_base_path()
        if not path.exists():
            raise MissingFile(f"testbed: base model not found at {path} (build it first)")
        return _load_path(path, base, ctx, "testbed", confine=None)
    entry = split_entry_ref(source)
    if entry is not None:
        return _load_entry(entry[0], entry[1], base, ctx, source)
    path = Path(source)
    if os.path.lexists(path):
        return _load_path(path, base, ctx, source, confine=confine)
    hub = parse_hub_id(source)
    if hub is not None:
        return _load_hub(hub[0], hub[1], base, ctx, source)
    raise MissingFile(f"{source}: no such file or folder, and not a hub id")


def _load_hub(repo: str, revision: str | None, base, ctx: _Ctx, source: str) -> LoadedModel:
    from eebguard.models.hub import resolve_hub

    snap, repo_dir, commit = resolve_hub(repo, revision)
    # cache snapshots are symlinks into ../../blobs: contain them in the repo's cache folder, not the snapshot
    return _load_path(snap, base, ctx, source, confine=repo_dir, revision=commit)


def _load_entry(manifest: Path, eid: str, base, ctx: _Ctx, source: str) -> LoadedModel:
    from eebguard.models.manifest import entry_paths, find_entry

    check_regular(manifest, str(manifest))
    lineno, entry = find_entry(manifest, eid)
    path, entry_base = entry_paths(manifest, lineno, entry)
    # an explicit base wins; then the manifest's; a delta's own metadata is the last resort
    return _load_path(path, base if base is not None else entry_base, ctx, source, confine=manifest.parent)


def _load_path(path: Path, base, ctx: _Ctx, source: str, confine: Path | None, revision: str | None = None
               ) -> LoadedModel:
    where = source
    if path.is_dir():
        root = Path(os.path.realpath(path)) if confine is None else path
        limit = confine or root
        resolve_within(path, limit, where)
        if os.path.lexists(path / "model_index.json"):
            return _load_diffusers(path, limit, ctx, source, revision)
        if os.path.lexists(path / "config.json"):
            return _load_component_folders(path, {None: path}, limit, base, ctx, source, revision)
        subs = {c: path / c for c in MODEL_COMPONENTS if os.path.lexists(path / c / "config.json")}
        if subs:
            return _load_component_folders(path, subs, limit, base, ctx, source, revision)
        raise UnsupportedFormat(f"{where}: folder has no model_index.json, config.json or component subfolders")
    check_regular(path, where)
    if path.suffix.lower() == ".jsonl":
        raise BadManifest(f"{where}: a manifest names many models; load 'path#<id>' for one entry")
    files = {path.name: path}
    if is_pickle_file(path):
        if not ctx.allow_pickle:
            refuse_pickle(path, where)
        tensors = load_pickle_state_dict(path, where)
        with tempfile.TemporaryDirectory(prefix="eebguard-unpickled-") as tmp:
            converted = Path(tmp) / "converted.safetensors"
            _save_tensors(tensors, converted, where)
            del tensors
            # from here on only safetensors is read, exactly as for a file that arrived that way
            return _load_single(converted, base, ctx, source, files, revision, confine or path.parent, path.parent)
    if path.suffix.lower() == ".safetensors":
        return _load_single(path, base, ctx, source, files, revision, confine or path.parent, path.parent)
    raise UnsupportedFormat(f"{where}: unsupported file type {path.suffix or '(no extension)'!r}")


def _save_tensors(tensors: dict, path: Path, where: str) -> None:
    from safetensors.torch import save_file

    with wrap_errors(f"{where}: converting unpickled tensors"):
        # clone: torch.load may return views sharing storage, which safetensors refuses
        save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(path))


# ---------------------------------------------------------------- bases


def _resolve_base(base, default_ref: str | None, rel_dir: Path, confine: Path, ctx: _Ctx, where: str, kind: str
                  ) -> LoadedModel:
    """A private copy of the base (callers mutate it)."""
    from eebguard.models.formats import copy_pipeline
    from eebguard.models.hub import parse_hub_id

    sub = _Ctx(ctx.allow_pickle, ctx.depth + 1)
    if base is not None:
        if isinstance(base, LoadedModel):
            return LoadedModel(copy_pipeline(base.pipe), base.identity, base.root)
        if _is_pipeline(base):
            return LoadedModel(copy_pipeline(base), pipeline_identity(base))
        return _load(base, None, sub)
    if default_ref is None:
        raise NeedsBase(f"{where}: a {kind} applies to a base model; pass base=")
    ref = default_ref
    if ref != "testbed" and not (parse_hub_id(ref) and not os.path.lexists(rel_dir / ref)):
        # a base named inside an untrusted file must stay inside the folder it came from
        ref = str(safe_relpath(ref, confine, f"{where}: base", base_dir=rel_dir))
    return _load(ref, None, sub)


# ---------------------------------------------------------------- single files


def _load_single(path: Path, base, ctx: _Ctx, source: str, files: dict[str, Path], revision, confine: Path,
                 rel_dir: Path) -> LoadedModel:
    from eebguard.models.delta import apply_delta, delta_metadata
    from eebguard.models.ldm import load_ldm
    from eebguard.models.lora import merge_lora

    where = source
    header = read_safetensors_header(path, where)
    with wrap_errors(where, UnsupportedFormat):
        kind = classify_keys(header.tensors, header.metadata)
    base_lm = None
    if kind == "delta":
        meta = delta_metadata(header, where)
        base_lm = _resolve_base(base, meta["base"], rel_dir, confine, ctx, where, kind)
        apply_delta(base_lm.pipe, path, where)
        pipe = base_lm.pipe
    elif kind == "lora":
        base_lm = _resolve_base(base, None, rel_dir, confine, ctx, where, "LoRA")
        from eebguard.models.lora import parse_lora

        parse_lora(dict.fromkeys(header.tensors), header.metadata, where)  # key checks before reading data
        merge_lora(base_lm.pipe, load_safetensors(path, header, where), header.metadata, where)
        pipe = base_lm.pipe
    elif kind == "ldm":
        base_lm = _resolve_base(base, None, rel_dir, confine, ctx, where, "single-file (LDM) checkpoint")
        pipe = load_ldm(path, header_entries(header), base_lm.pipe, where)
    elif kind == "flat":
        pipe, base_lm = _load_flat(path, header, base, ctx, where, rel_dir, confine)
    else:
        base_lm = _resolve_base(base, None, rel_dir, confine, ctx, where, "component-only checkpoint")
        comp = _match_component(header, base_lm.pipe, where)
        cfg = module_config(comp, getattr(base_lm.pipe, comp))
        module = build_module(comp, cfg, load_safetensors(path, header, where), where)
        pipe = _replace(base_lm.pipe, where, **{comp: module})
    ident = make_identity(source, kind, hash_files(files), revision, base_lm.identity if base_lm else None)
    return LoadedModel(pipe, ident)


def _match_component(header, base_pipe, where: str) -> str:
    """Which base component a prefix-less weights file replaces, by its key set."""
    keys = set(header.tensors)
    best, score = None, 0.0
    for comp in MODEL_COMPONENTS:
        module = getattr(base_pipe, comp, None)
        if module is None:
            continue
        ref = set(module.state_dict())
        s = len(keys & ref) / len(keys | ref)
        if s > score:
            best, score = comp, s
    if best is None or score < 0.5:
        raise UnsupportedFormat(f"{where}: tensor names match no known layout and no component of the base")
    module = getattr(base_pipe, best)
    expected = expected_entries(instantiate(best, module_config(best, module), where))
    check_entries(expected, header_entries(header), where, prefix=f"{best}.")
    return best


def _load_flat(path: Path, header, base, ctx: _Ctx, where: str, rel_dir: Path, confine: Path):
    """Flat layout ``<component>.<param>``; architecture from ``__metadata__['eebguard_configs']`` or the base."""
    from eebguard.models.formats import CONFIGS_KEY

    groups: dict[str, dict] = {}
    for key, info in header.tensors.items():
        comp, _, name = key.partition(".")
        groups.setdefault(comp, {})[name] = (info.shape, info.torch_dtype)
    stored = header.metadata.get(CONFIGS_KEY)
    cfgs: dict[str, dict] = {}
    if stored:
        raw = parse_json_object(stored, f"{where}: {CONFIGS_KEY}")
        for comp, cfg in raw.items():
            if comp not in (*MODEL_COMPONENTS, "scheduler", "tokenizer"):
                raise BadConfig(f"{where}: {CONFIGS_KEY} has unknown component {comp[:40]!r}")
            cfgs[comp] = validate_config(comp, cfg, f"{where}: {CONFIGS_KEY}.{comp}")
    missing_parts = [c for c in ("text_encoder", "unet") if c not in groups]
    need_base = not stored or missing_parts or "scheduler" not in cfgs
    base_lm = None
    if base is not None or need_base:
        base_lm = _resolve_base(base, None, rel_dir, confine, ctx, where, "flat single-file checkpoint")
    for comp in groups:
        if comp not in cfgs:
            if base_lm is None or getattr(base_lm.pipe, comp, None) is None:
                raise NeedsBase(f"{where}: no config for {comp}: store {CONFIGS_KEY} or pass base=")
            cfgs[comp] = module_config(comp, getattr(base_lm.pipe, comp))
        expected = expected_entries(instantiate(comp, cfgs[comp], where))
        check_entries(expected, groups[comp], where, prefix=f"{comp}.")
    if base_lm is not None:
        for comp in MODEL_COMPONENTS:
            if comp not in cfgs and getattr(base_lm.pipe, comp, None) is not None:
                cfgs[comp] = module_config(comp, getattr(base_lm.pipe, comp))
    cross_check(cfgs, where)
    tensors = load_safetensors(path, header, where)
    modules = {}
    for comp in groups:
        sd = {k[len(comp) + 1:]: v for k, v in tensors.items() if k.startswith(comp + ".")}
        modules[comp] = build_module(comp, cfgs[comp], sd, where)
    del tensors
    src = base_lm.pipe if base_lm is not None else None
    if "scheduler" in cfgs:
        scheduler = _scheduler_from_config(cfgs["scheduler"], where)
    else:
        scheduler = src.scheduler
    tokenizer = src.tokenizer if src is not None else _default_tokenizer(cfgs, where)
    parts = {c: modules.get(c, getattr(src, c, None) if src is not None else None) for c in MODEL_COMPONENTS}
    from eebguard.models.formats import assemble

    with wrap_errors(f"{where}: assembling pipeline"):
        pipe = assemble(parts["text_encoder"], tokenizer, parts["unet"], scheduler, parts["vae"])
    return pipe, base_lm


def _scheduler_from_config(cfg: dict, where: str):
    import diffusers

    with wrap_errors(f"{where}: scheduler config", BadConfig):
        return getattr(diffusers, cfg["_class_name"]).from_config(cfg)


def _default_tokenizer(cfgs: dict, where: str):
    """No base: SD 1.x's CLIP BPE tokenizer (shipped in data/tokenizer) if the vocabulary matches."""
    from eebguard.testbed.tokenizer import VOCAB_SIZE, load_tokenizer

    te = cfgs["text_encoder"]
    if te["vocab_size"] != VOCAB_SIZE:
        raise NeedsBase(f"{where}: no tokenizer for a {te['vocab_size']}-token vocabulary; pass base=")
    length = (cfgs.get("tokenizer") or {}).get("model_max_length") or te["max_position_embeddings"]
    return load_tokenizer(length)


def _replace(pipe, where: str, **modules):
    """The pipeline with some weight-bearing components swapped, re-checked for fit."""
    from eebguard.models.formats import assemble

    parts = {c: modules.get(c, getattr(pipe, c, None)) for c in MODEL_COMPONENTS}
    cfgs = {c: module_config(c, m) for c, m in parts.items() if m is not None}
    cfgs["tokenizer"] = {"model_max_length": int(pipe.tokenizer.model_max_length)}
    cross_check(cfgs, where)
    with wrap_errors(f"{where}: assembling pipeline"):
        return assemble(parts["text_encoder"], pipe.tokenizer, parts["unet"], pipe.scheduler, parts["vae"])


# ---------------------------------------------------------------- folders


def _weights_files(folder: Path, comp: str, listing: dict[str, Path], ctx: _Ctx, where: str, root: Path
                   ) -> list[tuple[str, str]]:
    """[(file name, 'safetensors' | 'pickle')] holding ``comp``'s weights."""
    stem = WEIGHT_STEM[comp]
    single, index = f"{stem}.safetensors", f"{stem}.safetensors.index.json"
    if single in listing:
        names = [single]
    elif index in listing:
        idx = read_json(folder / index, root, f"{where}/{index}")
        wmap = idx.get("weight_map")
        if not isinstance(wmap, dict) or not wmap:
            raise BadConfig(f"{where}/{index}: weight_map must be a non-empty object")
        names = sorted({safe_name(v, f"{where}/{index}") for v in wmap.values()})
        for n in names:
            if n not in listing:
                raise MissingFile(f"{where}/{n}: shard named by {index} is missing")
    else:
        pickles = [n for n in PICKLE_NAMES[comp] if n in listing]
        if not pickles:
            raise MissingFile(f"{where}: no weights file ({single})")
        if not ctx.allow_pickle:
            refuse_pickle(folder / pickles[0], f"{where}/{pickles[0]}")
        return [(pickles[0], "pickle")]
    out = []
    for n in names:
        if looks_like_pickle(listing[n]):
            if not ctx.allow_pickle:
                refuse_pickle(listing[n], f"{where}/{n}")
            out.append((n, "pickle"))
        else:
            out.append((n, "safetensors"))
    return out


def _used_files(comp: str, listing: dict[str, Path], weights) -> dict[str, Path]:
    """The files of a model component that loading reads (identity covers these, not stray variants)."""
    names = ["config.json", *(n for n, _ in weights), f"{WEIGHT_STEM[comp]}.safetensors.index.json"]
    return {f"{comp}/{n}": listing[n] for n in names if n in listing}


def _component_entries(folder: Path, comp: str, cfg: dict, weights, where: str):
    """Pre-check every weights file against the config; returns ({name: (shape, dtype)}, pickled tensors)."""
    expected = expected_entries(instantiate(comp, cfg, where))
    found, pickled = {}, {}
    for name, kind in weights:
        p = folder / name
        if kind == "pickle":
            tensors = load_pickle_state_dict(p, f"{where}/{name}")
            pickled.update(tensors)
            entries = {k: (tuple(v.shape), v.dtype) for k, v in tensors.items()}
        else:
            entries = header_entries(read_safetensors_header(p, f"{where}/{name}"))
        dup = set(entries) & set(found)
        if dup:
            raise BadConfig(f"{where}/{name}: tensor {sorted(dup)[0]} appears in two shards")
        found.update(entries)
    check_entries(expected, found, f"{where}/{weights[0][0]}" if len(weights) == 1 else where, prefix=f"{comp}.")
    return found, pickled


def _read_tokenizer(folder: Path, listing: dict[str, Path], root: Path, where: str) -> dict:
    for name, p in listing.items():
        check_regular(p, f"{where}/{name}", MAX_TOKENIZER_FILE)
    if not ("tokenizer.json" in listing or {"vocab.json", "merges.txt"} <= set(listing)):
        raise MissingFile(f"{where}: needs tokenizer.json or vocab.json + merges.txt")
    cfg = {}
    if "tokenizer_config.json" in listing:
        cfg = read_json(folder / "tokenizer_config.json", root, f"{where}/tokenizer_config.json")
        validate_config("tokenizer", cfg, f"{where}/tokenizer_config.json")
    for extra in ("special_tokens_map.json", "added_tokens.json"):
        if extra in listing:
            read_json(folder / extra, root, f"{where}/{extra}")
    return cfg


def _load_diffusers(root: Path, confine: Path, ctx: _Ctx, source: str, revision: str | None) -> LoadedModel:
    from diffusers import StableDiffusionPipeline

    from eebguard.models.formats import skip_kwargs

    where = source
    index = read_json(root / "model_index.json", confine, f"{where}/model_index.json")
    comps = validate_model_index(index, f"{where}/model_index.json")
    wanted = [c for c in LOADED_COMPONENTS if comps.get(c) is not None]
    files: dict[str, Path] = {"model_index.json": root / "model_index.json"}
    configs: dict[str, dict] = {}
    weights: dict[str, list] = {}
    pickled: dict[str, dict] = {}
    listings: dict[str, dict] = {}
    for comp in wanted:
        folder = root / comp
        at = f"{where}/{comp}"
        if not os.path.lexists(folder):
            raise MissingFile(f"{at}: component folder is missing")
        resolve_within(folder, confine, at)
        if not folder.is_dir():
            raise MissingFile(f"{at}: not a folder")
        listing = listings[comp] = list_files(folder, confine, at)
        if comp == "tokenizer":
            files.update({f"{comp}/{rel}": p for rel, p in listing.items()})
        if comp == "scheduler":
            if "scheduler_config.json" not in listing:
                raise MissingFile(f"{at}/scheduler_config.json: missing")
            cfg = read_json(folder / "scheduler_config.json", confine, f"{at}/scheduler_config.json")
            configs[comp] = validate_config(comp, cfg, f"{at}/scheduler_config.json")
            files[f"{comp}/scheduler_config.json"] = listing["scheduler_config.json"]
            if (comps[comp][1]) != cfg["_class_name"]:
                raise BadConfig(f"{at}: scheduler class differs from model_index.json")
        elif comp == "tokenizer":
            configs[comp] = _read_tokenizer(folder, listing, confine, at)
        else:
            if "adapter_config.json" in listing:
                # transformers/diffusers would fetch and attach the adapter (and its named base) themselves
                raise BadConfig(f"{at}/adapter_config.json: adapters inside a pipeline folder are refused")
            if "config.json" not in listing:
                raise MissingFile(f"{at}/config.json: missing")
            cfg = read_json(folder / "config.json", confine, f"{at}/config.json")
            configs[comp] = validate_config(comp, cfg, f"{at}/config.json")
            weights[comp] = _weights_files(folder, comp, listing, ctx, at, confine)
            files.update(_used_files(comp, listing, weights[comp]))
    cross_check(configs, where)
    for comp, wfiles in weights.items():
        _, tensors = _component_entries(root / comp, comp, configs[comp], wfiles, f"{where}/{comp}")
        if tensors:
            pickled[comp] = tensors
    kwargs = skip_kwargs()
    if "vae" not in wanted:
        kwargs["vae"] = None
    with tempfile.TemporaryDirectory(prefix="eebguard-unpickled-") as tmp:
        load_root = root
        if pickled:
            load_root = _rewrite_pickled(root, Path(tmp), wanted, listings, weights, pickled, where)
        pickled.clear()
        with wrap_errors(f"{where}: diffusers failed to load the pipeline"):
            pipe = StableDiffusionPipeline.from_pretrained(
                str(load_root), local_files_only=True, use_safetensors=True, dtype=torch.float32, **kwargs
            )
    ident = make_identity(source, "diffusers", hash_files(files), revision, ledger=coverage(root, set(files)))
    return LoadedModel(pipe, ident, root)


def _rewrite_pickled(root: Path, tmp: Path, wanted, listings, weights, pickled, where: str) -> Path:
    """A copy of the folder where restricted-unpickled weights are safetensors, so diffusers never unpickles."""
    shutil.copyfile(root / "model_index.json", tmp / "model_index.json")
    for comp in wanted:
        (tmp / comp).mkdir()
        skip = {n for n, _ in weights.get(comp, [])}
        skip |= {n for n in listings[comp] if n.endswith(".index.json")}
        for rel, p in listings[comp].items():
            if rel in skip or "/" in rel:
                continue
            shutil.copyfile(p, tmp / comp / rel)
        if comp in weights:
            if comp in pickled:
                _save_tensors(pickled[comp], tmp / comp / f"{WEIGHT_STEM[comp]}.safetensors", where)
            else:
                for n, _ in weights[comp]:
                    shutil.copyfile(root / comp / n, tmp / comp / n)
                idx = f"{WEIGHT_STEM[comp]}.safetensors.index.json"
                if idx in listings[comp]:
                    shutil.copyfile(root / comp / idx, tmp / comp / idx)
    return tmp


def _component_of(cfg: dict, where: str) -> str:
    cls = cfg.get("_class_name")
    if cls == "UNet2DConditionModel":
        return "unet"
    if cls == "AutoencoderKL":
        return "vae"
    if cfg.get("model_type") == "clip_text_model":
        return "text_encoder"
    raise BadConfig(f"{where}: config.json describes no supported component (class {str(cls)[:60]!r})")


def _load_component_folders(path: Path, subs: dict, confine: Path, base, ctx: _Ctx, source: str,
                            revision: str | None) -> LoadedModel:
    """``unet/`` or ``text_encoder/`` folders (config + weights) replacing those components of ``base``."""
    where = source
    files: dict[str, Path] = {}
    modules = {}
    for name, folder in subs.items():
        at = where if name is None else f"{where}/{name}"
        listing = list_files(folder, confine, at)
        prefix = "" if name is None else f"{name}/"
        cfg = read_json(folder / "config.json", confine, f"{at}/config.json")
        comp = _component_of(cfg, f"{at}/config.json")
        if name is not None and comp != name:
            raise BadConfig(f"{at}/config.json: describes a {comp}, not a {name}")
        validate_config(comp, cfg, f"{at}/config.json")
        wfiles = _weights_files(folder, comp, listing, ctx, at, confine)
        files.update({prefix + rel.split("/", 1)[1]: p for rel, p in _used_files(comp, listing, wfiles).items()})
        _, tensors = _component_entries(folder, comp, cfg, wfiles, at)
        if not tensors:
            for n, _ in wfiles:
                tensors.update(load_safetensors(folder / n, None, f"{at}/{n}"))
        modules[comp] = build_module(comp, cfg, tensors, at)
        del tensors
    rel_dir = path if path.is_dir() else path.parent
    base_lm = _resolve_base(base, None, rel_dir, confine, ctx, where, "component checkpoint")
    pipe = _replace(base_lm.pipe, where, **modules)
    ledger = coverage(path, set(files)) if path.is_dir() else None
    ident = make_identity(source, "component", hash_files(files), revision, base_lm.identity, ledger=ledger)
    return LoadedModel(pipe, ident)
