"""Exceptions for loading untrusted models: one class per failure, each with a stable ``code`` and a one-line message."""
from __future__ import annotations

import contextlib
import re

_MAX_MESSAGE = 400


def one_line(text: object, limit: int = _MAX_MESSAGE) -> str:
    """Collapse whitespace (hostile names may carry newlines) and cap the length."""
    s = re.sub(r"\s+", " ", str(text)).strip()
    return s if len(s) <= limit else s[: limit - 3] + "..."


class ModelLoadError(Exception):
    """Base class: the model could not be loaded safely."""

    code = "model_load_error"

    def __init__(self, message: str, *, detail: str | None = None):
        self.message = one_line(message)
        # full text of a wrapped third-party error, kept out of str() so reports stay one line
        self.detail = detail
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class PickleRefused(ModelLoadError):
    """Pickle-based weights (refused by default; with allow_pickle only torch's restricted unpickler is used)."""

    code = "pickle_refused"


class CorruptWeights(ModelLoadError):
    """A weights file is truncated or its header is malformed."""

    code = "corrupt_weights"


class BadConfig(ModelLoadError):
    """A config is malformed, names a class outside the allow-list, or asks for absurd sizes."""

    code = "bad_config"


class PathEscape(ModelLoadError):
    """A path, symlink or config entry points outside the model's root folder."""

    code = "path_escape"


class SpecialFile(ModelLoadError):
    """A FIFO, device or other non-regular file where a file was expected (reading it could hang)."""

    code = "special_file"


class ShapeMismatch(ModelLoadError):
    """A tensor's shape differs from what the config implies."""

    code = "shape_mismatch"


class DtypeMismatch(ShapeMismatch):
    """A tensor's dtype is not what the parameter needs (e.g. integers where floats belong)."""

    code = "dtype_mismatch"


class MissingWeights(ModelLoadError):
    """Parameters the config implies are absent from the weights."""

    code = "missing_weights"


class UnexpectedWeights(ModelLoadError):
    """Tensors that belong to no parameter of the model."""

    code = "unexpected_weights"


class NonFiniteWeights(ModelLoadError):
    """NaN or Inf in a parameter."""

    code = "non_finite_weights"


class MissingFile(ModelLoadError):
    """A file or folder the model needs does not exist."""

    code = "missing_file"


class NotInLocalCache(MissingFile):
    """A hub id that is not in the local Hugging Face cache (nothing is ever downloaded)."""

    code = "not_in_local_cache"


class UnsupportedFormat(ModelLoadError):
    """The input is not one of the supported model formats."""

    code = "unsupported_format"


class NeedsBase(ModelLoadError):
    """The input only makes sense over a base model and none was given or named."""

    code = "needs_base"


class BadLora(ModelLoadError):
    """A LoRA file is malformed or uses an unsupported variant."""

    code = "bad_lora"


class UnknownLoraTarget(BadLora):
    """A LoRA targets a module the base model does not have."""

    code = "unknown_lora_target"


class BadDelta(ModelLoadError):
    """An eebguard delta file has bad metadata or keys."""

    code = "bad_delta"


class BadManifest(ModelLoadError):
    """A zoo manifest line is malformed, or the named entry does not exist."""

    code = "bad_manifest"


class LoadFailed(ModelLoadError):
    """A third-party loader failed on input that passed validation (the original error is in ``detail``)."""

    code = "load_failed"


ALL_ERRORS = (
    PickleRefused, CorruptWeights, BadConfig, PathEscape, SpecialFile, ShapeMismatch, DtypeMismatch, MissingWeights,
    UnexpectedWeights, NonFiniteWeights, MissingFile, NotInLocalCache, UnsupportedFormat, NeedsBase, BadLora,
    UnknownLoraTarget, BadDelta, BadManifest, LoadFailed,
)


@contextlib.contextmanager
def wrap_errors(what: str, cls: type[ModelLoadError] = LoadFailed):
    """Turn any third-party exception into ``cls`` with a one-line message; ours pass through untouched."""
    try:
        yield
    except ModelLoadError:
        raise
    except RecursionError:
        raise cls(f"{what}: input nested too deeply") from None
    except MemoryError:
        raise cls(f"{what}: out of memory") from None
    except Exception as e:  # noqa: BLE001 - the point is to never leak a raw third-party traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        # `from None`: a chained third-party traceback is exactly what callers must not see
        raise cls(f"{what}: {type(e).__name__}: {first}", detail=f"{type(e).__name__}: {e}") from None
