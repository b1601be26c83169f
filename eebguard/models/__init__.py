"""Loading untrusted text-to-image models safely.

``load(source, *, base=None, allow_pickle=False, device="cpu", dtype=torch.float32) -> LoadedModel`` accepts:

- a diffusers pipeline folder (``model_index.json``; VAE-less testbed folders and real SD 1.x/2.x folders);
- a single ``.safetensors`` checkpoint: CompVis/LDM keys (architecture from ``base``) or the flat
  ``unet.*``/``text_encoder.*``/``vae.*`` layout (architecture from ``__metadata__['eebguard_configs']`` or ``base``);
- a component-only checkpoint over ``base``: a ``unet/``/``text_encoder/`` folder, a folder of them, or a
  prefix-less safetensors file of one component;
- a LoRA (diffusers/peft or kohya keys) merged into a copy of ``base``;
- an eebguard delta (``write_delta``/``apply_delta``) over ``base`` or the base its metadata names;
- a zoo manifest entry ``path/to/manifest.jsonl#<id>``;
- a hub id ``owner/name[@revision]`` from the local Hugging Face cache only;
- an already-loaded pipeline (wrapped; identity from its state dict).

``LoadedModel.identity``: ``source``, ``kind`` (diffusers | ldm | flat | component | lora | delta | object),
``files`` (relpath -> sha256 of each file read), ``digest`` (sha256 over those), ``revision`` (hub commit or None)
and ``base`` (the base's identity or None).

Everything hostile raises a ``ModelLoadError`` subclass with a stable ``code`` and a one-line message.
"""
from eebguard.models.delta import apply_delta, write_delta
from eebguard.models.errors import (
    ALL_ERRORS,
    BadConfig,
    BadDelta,
    BadLora,
    BadManifest,
    CorruptWeights,
    DtypeMismatch,
    LoadFailed,
    MissingFile,
    MissingWeights,
    ModelLoadError,
    NeedsBase,
    NonFiniteWeights,
    NotInLocalCache,
    PathEscape,
    PickleRefused,
    ShapeMismatch,
    SpecialFile,
    UnexpectedWeights,
    UnknownLoraTarget,
    UnsupportedFormat,
)
from eebguard.models.formats import export_config_folder, save_single_file
from eebguard.models.load import LoadedModel, load, testbed_base_path
from eebguard.models.lora import merge_lora
from eebguard.models.manifest import load_manifest

__all__ = [
    "load", "LoadedModel", "ModelLoadError", "load_manifest", "write_delta", "apply_delta", "merge_lora",
    "save_single_file", "export_config_folder", "testbed_base_path", "ALL_ERRORS",
    "BadConfig", "BadDelta", "BadLora", "BadManifest", "CorruptWeights", "DtypeMismatch", "LoadFailed",
    "MissingFile", "MissingWeights", "NeedsBase", "NonFiniteWeights", "NotInLocalCache", "PathEscape",
    "PickleRefused", "ShapeMismatch", "SpecialFile", "UnexpectedWeights", "UnknownLoraTarget", "UnsupportedFormat",
]
