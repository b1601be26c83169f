"""Config validation (allow-listed classes, capped sizes) and building modules from validated configs.

Nothing here allocates from a number that has not passed a cap: modules are first built with parameters on
the ``meta`` device (no memory), so shapes can be compared against weight headers before any tensor is read.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from eebguard.models.errors import BadConfig, DtypeMismatch, MissingWeights, ShapeMismatch, UnexpectedWeights

PIPELINE_CLASSES = {"StableDiffusionPipeline"}
SCHEDULER_CLASSES = {
    "DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
    "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "UniPCMultistepScheduler",
    "DEISMultistepScheduler", "LCMScheduler",
}
TEXT_ENCODER_CLASSES = {"CLIPTextModel", "CLIPTextModelWithProjection"}
TOKENIZER_CLASSES = {"CLIPTokenizer", "CLIPTokenizerFast"}
#: component -> allowed (library, class) in model_index.json
COMPONENT_CLASSES: dict[str, set[tuple[str, str]]] = {
    "unet": {("diffusers", "UNet2DConditionModel")},
    "text_encoder": {("transformers", c) for c in TEXT_ENCODER_CLASSES},
    "tokenizer": {("transformers", c) for c in TOKENIZER_CLASSES},
    "scheduler": {("diffusers", c) for c in SCHEDULER_CLASSES},
    "vae": {("diffusers", "AutoencoderKL")},
    # named by real SD folders but never loaded by eebguard
    "safety_checker": {("stable_diffusion", "StableDiffusionSafetyChecker")},
    "feature_extractor": {("transformers", "CLIPImageProcessor"), ("transformers", "CLIPFeatureExtractor")},
    "image_encoder": {("transformers", "CLIPVisionModelWithProjection")},
}
MODEL_COMPONENTS = ("text_encoder", "unet", "vae")  # components with weights, in load order
REQUIRED_COMPONENTS = ("text_encoder", "tokenizer", "unet", "scheduler")
UNET_DOWN = {"CrossAttnDownBlock2D", "DownBlock2D"}
UNET_UP = {"CrossAttnUpBlock2D", "UpBlock2D"}
UNET_MID = {"UNetMidBlock2DCrossAttn", "UNetMidBlock2D", None}
VAE_DOWN = {"DownEncoderBlock2D"}
VAE_UP = {"UpDecoderBlock2D"}

#: keys whose values drive allocation: positive ints (or lists of them) under these caps
SIZE_CAPS = {
    "vocab_size": 1_000_000,
    "hidden_size": 16384,
    "intermediate_size": 65536,
    "num_hidden_layers": 256,
    "num_attention_heads": 1024,
    "max_position_embeddings": 8192,
    "projection_dim": 16384,
    "sample_size": 1024,
    "in_channels": 8192,
    "out_channels": 8192,
    "latent_channels": 8192,
    "block_out_channels": 8192,
    "layers_per_block": 256,
    "transformer_layers_per_block": 256,
    "reverse_transformer_layers_per_block": 256,
    "cross_attention_dim": 16384,
    "attention_head_dim": 16384,
    "norm_num_groups": 8192,
    "time_embedding_dim": 16384,
    "time_cond_proj_dim": 16384,
    "encoder_hid_dim": 16384,
    "projection_class_embeddings_input_dim": 16384,
    "addition_time_embed_dim": 16384,
    "addition_embed_type_num_heads": 1024,
    "num_class_embeds": 1_000_000,
    "conv_in_kernel": 31,
    "conv_out_kernel": 31,
    "num_train_timesteps": 100_000,
    "model_max_length": 8192,
    "image_size": 8192,
    "patch_size": 1024,
    "num_channels": 8192,
}
OTHER_INT_CAP = 10**9  # anything else (token ids, offsets) allocates nothing, but stays bounded
MAX_LIST = 4096
MAX_STR = 4096
#: keys that make loaders import code or quantisation backends
FORBIDDEN_KEYS = {"auto_map", "custom_pipeline", "_custom_pipeline", "trust_remote_code", "quantization_config"}
SAFE_ATTN = {None, "eager", "sdpa"}
TOKENIZER_BACKENDS = {None, "tokenizers"}


def _walk(obj: Any, what: str, path: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str) or len(k) > 256:
                raise BadConfig(f"{what}: bad key {str(k)[:40]!r}")
            if k in FORBIDDEN_KEYS:
                raise BadConfig(f"{what}: key {k!r} refused (it makes loaders import code)")
            if "attn_implementation" in k and v not in SAFE_ATTN:
                # transformers can fetch attention kernels (code) from the hub by name
                raise BadConfig(f"{what}: {k}={str(v)[:40]!r} refused (only {sorted(SAFE_ATTN - {None})})")
            here = f"{path}.{k}" if path else k
            if k in SIZE_CAPS:
                _check_size(v, k, here, what)
            _walk(v, what, here)
    elif isinstance(obj, list):
        if len(obj) > MAX_LIST:
            raise BadConfig(f"{what}: {path} has {len(obj)} items (limit {MAX_LIST})")
        for i, v in enumerate(obj):
            _walk(v, what, f"{path}[{i}]")
    elif isinstance(obj, bool) or obj is None:
        pass
    elif isinstance(obj, int):
        if abs(obj) > OTHER_INT_CAP:
            raise BadConfig(f"{what}: {path}={obj} is out of range")
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise BadConfig(f"{what}: {path} is not finite")
    elif isinstance(obj, str):
        if len(obj) > MAX_STR:
            raise BadConfig(f"{what}: {path} string too long")
    else:
        raise BadConfig(f"{what}: {path} has unsupported type {type(obj).__name__}")


def _check_size(v: Any, key: str, path: str, what: str) -> None:
    cap = SIZE_CAPS[key]
    vals = v if isinstance(v, list) else [v]
    for x in vals:
        if x is None and not isinstance(v, list):
            continue
        if type(x) is not int or not 1 <= x <= cap:
            shown = str(x)[:30]
            raise BadConfig(f"{what}: {path}={shown} must be an integer in [1, {cap}]")


def _require(cfg: dict, key: str, what: str, types=(int,)) -> Any:
    v = cfg.get(key)
    if v is None or not isinstance(v, types) or isinstance(v, bool):
        raise BadConfig(f"{what}: missing or invalid {key!r}")
    return v


def _block_types(cfg: dict, key: str, allowed: set, what: str) -> list:
    v = cfg.get(key)
    if not isinstance(v, list) or not v or len(v) > 8 or any(b not in allowed for b in v):
        raise BadConfig(f"{what}: {key} must list blocks from {sorted(allowed)}")
    return v


def validate_config(component: str, cfg: dict, what: str) -> dict:
    """Check one component config (JSON object) before any class sees it; returns it unchanged."""
    if not isinstance(cfg, dict):
        raise BadConfig(f"{what}: config must be a JSON object")
    _walk(cfg, what)
    if component == "unet":
        if cfg.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
            raise BadConfig(f"{what}: class {str(cfg.get('_class_name'))[:60]!r} is not allowed for unet")
        down = _block_types(cfg, "down_block_types", UNET_DOWN, what)
        up = _block_types(cfg, "up_block_types", UNET_UP, what)
        if cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn") not in UNET_MID:
            raise BadConfig(f"{what}: mid_block_type not allowed")
        boc = cfg.get("block_out_channels")
        if not isinstance(boc, list) or len(boc) != len(down) or len(up) != len(down):
            raise BadConfig(f"{what}: block_out_channels/down_block_types/up_block_types lengths differ")
        for key in ("in_channels", "out_channels", "cross_attention_dim"):
            _require(cfg, key, what, (int, list))
        for key in ("addition_embed_type", "class_embed_type", "encoder_hid_dim_type"):
            if cfg.get(key) is not None:
                raise BadConfig(f"{what}: {key}={str(cfg[key])[:30]!r} is not a Stable Diffusion 1.x/2.x U-Net")
    elif component == "vae":
        if cfg.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
            raise BadConfig(f"{what}: class {str(cfg.get('_class_name'))[:60]!r} is not allowed for vae")
        _block_types(cfg, "down_block_types", VAE_DOWN, what)
        _block_types(cfg, "up_block_types", VAE_UP, what)
        _require(cfg, "latent_channels", what)
    elif component == "text_encoder":
        if cfg.get("model_type") != "clip_text_model":
            raise BadConfig(f"{what}: model_type {str(cfg.get('model_type'))[:40]!r} is not clip_text_model")
        arch = cfg.get("architectures") or ["CLIPTextModel"]
        if not isinstance(arch, list) or any(a not in TEXT_ENCODER_CLASSES for a in arch):
            raise BadConfig(f"{what}: architectures {str(arch)[:80]} not allowed")
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "max_position_embeddings"):
            _require(cfg, key, what)
        if cfg["hidden_size"] % cfg["num_attention_heads"]:
            raise BadConfig(f"{what}: hidden_size is not divisible by num_attention_heads")
        from transformers import CLIPTextConfig

        for k in cfg:
            # config keys become attributes: one named like a method would replace it
            if not k.isidentifier() or callable(getattr(CLIPTextConfig, k, None)):
                raise BadConfig(f"{what}: key {k[:40]!r} is not a valid config field")
    elif component == "scheduler":
        if cfg.get("_class_name") not in SCHEDULER_CLASSES:
            raise BadConfig(f"{what}: scheduler class {str(cfg.get('_class_name'))[:60]!r} not allowed")
        _check_scheduler(cfg, what)
    elif component == "tokenizer":
        cls = cfg.get("tokenizer_class")
        if cls is not None and cls not in TOKENIZER_CLASSES:
            raise BadConfig(f"{what}: tokenizer class {str(cls)[:60]!r} not allowed")
        if cfg.get("backend") not in TOKENIZER_BACKENDS:
            raise BadConfig(f"{what}: tokenizer backend {str(cfg.get('backend'))[:40]!r} not allowed")
        mml = cfg.get("model_max_length")
        if mml is not None and (type(mml) is not int or not 1 <= mml <= SIZE_CAPS["model_max_length"]):
            raise BadConfig(f"{what}: model_max_length must be an integer in [1, {SIZE_CAPS['model_max_length']}]")
    else:
        raise BadConfig(f"{what}: unknown component {component!r}")
    return cfg


SCHEDULER_BETA_SCHEDULES = {"linear", "scaled_linear", "squaredcos_cap_v2"}
SCHEDULER_PREDICTIONS = {"epsilon", "v_prediction", "sample"}
MAX_TRAIN_TIMESTEPS = 10_000


def _check_scheduler(cfg: dict, what: str) -> None:
    """Bounds on what a scheduler config may say: betas outside (0, 1) make every generation NaN, which
    would read as "the concept is gone"."""
    import math

    n = cfg.get("num_train_timesteps", 1000)
    if type(n) is not int or not 1 <= n <= MAX_TRAIN_TIMESTEPS:
        raise BadConfig(f"{what}: num_train_timesteps must be an integer in [1, {MAX_TRAIN_TIMESTEPS}]")

    def beta(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 < x < 1

    for key in ("beta_start", "beta_end"):
        if key in cfg and not beta(cfg[key]):
            raise BadConfig(f"{what}: {key}={str(cfg[key])[:30]} must be a number in (0, 1)")
    if "beta_start" in cfg and "beta_end" in cfg and cfg["beta_start"] > cfg["beta_end"]:
        raise BadConfig(f"{what}: beta_start must not exceed beta_end")
    tb = cfg.get("trained_betas")
    if tb is not None and (not isinstance(tb, list) or len(tb) != n or not all(beta(x) for x in tb)):
        raise BadConfig(f"{what}: trained_betas must list num_train_timesteps numbers in (0, 1)")
    if cfg.get("beta_schedule", "linear") not in SCHEDULER_BETA_SCHEDULES:
        raise BadConfig(f"{what}: beta_schedule {str(cfg.get('beta_schedule'))[:40]!r} not allowed")
    if cfg.get("prediction_type", "epsilon") not in SCHEDULER_PREDICTIONS:
        raise BadConfig(f"{what}: prediction_type {str(cfg.get('prediction_type'))[:40]!r} not allowed")
    off = cfg.get("steps_offset", 0)
    if type(off) is not int or not 0 <= off < n:
        raise BadConfig(f"{what}: steps_offset must be an integer in [0, num_train_timesteps)")


def verify_scheduler(scheduler, where: str) -> None:
    """The built scheduler's noise levels: finite, in (0, 1], decreasing (no NaN generation ahead)."""
    ac = getattr(scheduler, "alphas_cumprod", None)
    if ac is None:
        return
    ac = torch.as_tensor(ac, dtype=torch.float64)
    if not (torch.isfinite(ac).all() and (ac > 0).all() and (ac <= 1).all() and (ac[1:] <= ac[:-1]).all()):
        raise BadConfig(f"{where}: scheduler noise levels are not finite and decreasing in (0, 1]: refused")


def validate_model_index(index: dict, what: str) -> dict[str, tuple[str, str] | None]:
    """``{component: (library, class) or None}`` from a model_index.json, allow-list enforced."""
    from eebguard.models.safety import safe_name

    _walk(index, what)
    if index.get("_class_name") not in PIPELINE_CLASSES:
        raise BadConfig(f"{what}: pipeline class {str(index.get('_class_name'))[:60]!r} not allowed")
    comps: dict[str, tuple[str, str] | None] = {}
    for key, value in index.items():
        if key.startswith("_"):
            continue
        if not isinstance(value, list):
            if isinstance(value, (dict,)):
                raise BadConfig(f"{what}: entry {key!r} must be [library, class]")
            continue  # plain options such as requires_safety_checker
        safe_name(key, what)  # a component name is a subfolder: no '../', no absolute paths
        if len(value) != 2:
            raise BadConfig(f"{what}: entry {key!r} must be [library, class]")
        if value == [None, None]:
            comps[key] = None
            continue
        lib, cls = value
        if key not in COMPONENT_CLASSES:
            raise BadConfig(f"{what}: unknown component {key!r}")
        if (lib, cls) not in COMPONENT_CLASSES[key]:
            raise BadConfig(f"{what}: {key} class {str(lib)[:40]}.{str(cls)[:40]} is not in the allow-list")
        comps[key] = (lib, cls)
    for key in REQUIRED_COMPONENTS:
        if comps.get(key) is None:
            raise BadConfig(f"{what}: required component {key!r} is missing")
    return comps


def cross_check(configs: dict[str, dict], what: str) -> None:
    """Components must fit together, or the pipeline would fail (or allocate oddly) later."""
    unet, te, vae, tok = (configs.get(k) for k in ("unet", "text_encoder", "vae", "tokenizer"))
    if unet and te and isinstance(unet.get("cross_attention_dim"), int):
        if te["hidden_size"] != unet["cross_attention_dim"]:
            raise BadConfig(f"{what}: text_encoder hidden_size {te['hidden_size']} != unet cross_attention_dim")
    if unet and vae and vae.get("latent_channels") != unet.get("in_channels"):
        raise BadConfig(f"{what}: vae latent_channels != unet in_channels")
    if tok and te and isinstance(tok.get("model_max_length"), int):
        if tok["model_max_length"] > te["max_position_embeddings"]:
            raise BadConfig(f"{what}: tokenizer model_max_length exceeds text_encoder max_position_embeddings")


# ---------------------------------------------------------------- building modules


@contextlib.contextmanager
def _init_context(meta: bool):
    """``meta``: every tensor on the meta device (shapes only, no memory). Otherwise parameters on meta and
    buffers real (accelerate), so ``load_state_dict(assign=True)`` yields a working module; without accelerate,
    plain construction (only reached after the weights' headers matched the config, so sizes are bounded)."""
    if meta:
        with torch.device("meta"):
            yield
        return
    try:
        from accelerate import init_empty_weights
    except ImportError:  # pragma: no cover - accelerate ships with diffusers' runtime deps here
        yield
        return
    with init_empty_weights(include_buffers=False):
        yield


def instantiate(component: str, cfg: dict, what: str, meta: bool = True):
    """Module from a *validated* config: all-meta by default (for shape checks), loadable with ``meta=False``."""
    from eebguard.models.errors import wrap_errors

    with wrap_errors(f"{what}: cannot build {component} from config", BadConfig), _init_context(meta):
        if component == "unet":
            from diffusers import UNet2DConditionModel

            return UNet2DConditionModel.from_config(cfg)
        if component == "vae":
            from diffusers import AutoencoderKL

            return AutoencoderKL.from_config(cfg)
        if component == "text_encoder":
            import transformers
            from transformers import CLIPTextConfig

            arch = (cfg.get("architectures") or ["CLIPTextModel"])[0]
            conf = CLIPTextConfig.from_dict({k: v for k, v in cfg.items() if k not in ("architectures",)})
            conf.architectures = [arch]
            return getattr(transformers, arch)(conf)
    raise BadConfig(f"{what}: {component} has no weights")


def module_config(component: str, module) -> dict:
    """A plain-dict config of a loaded module (for re-instantiating it on meta)."""
    if component == "text_encoder":
        d = module.config.to_dict()
        d["architectures"] = [type(module).__name__]
        return d
    return dict(module.config)


def expected_entries(module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def check_entries(
    expected: dict[str, tuple[tuple[int, ...], torch.dtype]],
    found: dict[str, tuple[tuple[int, ...], torch.dtype]],
    where: str,
    prefix: str = "",
    require_all: bool = True,
    allow_extra: bool = False,
) -> None:
    """Compare tensors found in a file with what the config implies; the first problem raises, naming it."""
    if not allow_extra:
        extra = sorted(set(found) - set(expected))
        if extra:
            more = f" (+{len(extra) - 1} more)" if len(extra) > 1 else ""
            raise UnexpectedWeights(f"{where}: tensor {prefix}{extra[0]} is not a parameter of the model{more}")
    if require_all:
        missing = sorted(set(expected) - set(found))
        if missing:
            more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
            raise MissingWeights(f"{where}: parameter {prefix}{missing[0]} is missing{more}")
    for name, (shape, dt) in found.items():
        if name not in expected:
            continue
        eshape, edt = expected[name]
        if tuple(shape) != tuple(eshape):
            raise ShapeMismatch(
                f"{where}: {prefix}{name} has shape {list(shape)}, the config implies {list(eshape)}"
            )
        if edt.is_floating_point != dt.is_floating_point or dt in (torch.float8_e4m3fn, torch.float8_e5m2):
            raise DtypeMismatch(f"{where}: {prefix}{name} is stored as {dt}, the parameter needs {edt}")
        if not edt.is_floating_point and dt != edt:
            raise DtypeMismatch(f"{where}: {prefix}{name} is stored as {dt}, the buffer needs {edt}")


def header_entries(header) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {k: (t.shape, t.torch_dtype) for k, t in header.tensors.items()}


def build_module(component: str, cfg: dict, state_dict: dict[str, torch.Tensor], where: str, dtype=torch.float32):
    """Module from a validated config with exactly ``state_dict`` as its weights (strict)."""
    from eebguard.models.errors import wrap_errors

    check_entries(expected_entries(instantiate(component, cfg, where)),
                  {k: (tuple(v.shape), v.dtype) for k, v in state_dict.items()}, where, prefix=f"{component}.")
    module = instantiate(component, cfg, where, meta=False)
    sd = {}
    ref = module.state_dict()
    for k, v in state_dict.items():
        target = dtype if ref[k].is_floating_point() else ref[k].dtype
        sd[k] = v.detach().to(dtype=target, device="cpu").contiguous()
    with wrap_errors(f"{where}: loading {component} weights", ShapeMismatch):
        module.load_state_dict(sd, strict=True, assign=True)
    return module.eval()


def verify_module(component: str, module, where: str, dtype: torch.dtype | None = None) -> None:
    """After loading: shapes match the module's own config, nothing left on meta, dtype as asked, all finite."""
    from eebguard.models.safety import check_finite

    expected = expected_entries(instantiate(component, module_config(component, module), where))
    actual = {}
    for k, v in module.state_dict().items():
        if v.device.type == "meta":
            raise MissingWeights(f"{where}: parameter {component}.{k} was never loaded")
        actual[k] = (tuple(v.shape), v.dtype)
    check_entries(expected, actual, where, prefix=f"{component}.")
    if dtype is not None:
        for k, p in module.named_parameters():
            if p.dtype != dtype:
                raise DtypeMismatch(f"{where}: parameter {component}.{k} is {p.dtype} after loading, expected {dtype}")
    check_finite(((f"{component}.{k}", v) for k, v in module.state_dict().items()), where)


def verify_pipeline(pipe, where: str, dtype: torch.dtype | None = None) -> None:
    if getattr(pipe, "scheduler", None) is not None:
        verify_scheduler(pipe.scheduler, where)
    for comp in MODEL_COMPONENTS:
        module = getattr(pipe, comp, None)
        if module is not None:
            verify_module(comp, module, where, dtype)
