"""Checks that run on hostile bytes *before* any third-party deserialiser sees them."""
from __future__ import annotations

import json
import math
import os
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from eebguard.models.errors import (
    BadConfig,
    CorruptWeights,
    MissingFile,
    PathEscape,
    PickleRefused,
    SpecialFile,
    UnsupportedFormat,
)

MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
MAX_TENSORS = 1_000_000
MAX_JSON_BYTES = 4 * 2**20  # configs are a few KB; manifests use their own cap
MAX_JSON_DEPTH = 32
PICKLE_SUFFIXES = {".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle"}

#: safetensors dtype code -> (bytes per element, torch dtype)
DTYPES: dict[str, tuple[int, torch.dtype]] = {
    "F64": (8, torch.float64),
    "F32": (4, torch.float32),
    "F16": (2, torch.float16),
    "BF16": (2, torch.bfloat16),
    "I64": (8, torch.int64),
    "I32": (4, torch.int32),
    "I16": (2, torch.int16),
    "I8": (1, torch.int8),
    "U8": (1, torch.uint8),
    "U16": (2, torch.uint16),
    "U32": (4, torch.uint32),
    "U64": (8, torch.uint64),
    "BOOL": (1, torch.bool),
    "F8_E4M3": (1, torch.float8_e4m3fn),
    "F8_E5M2": (1, torch.float8_e5m2),
}
#: dtypes accepted for floating-point parameters (fp8 would silently lose the model)
FLOAT_CODES = {"F64", "F32", "F16", "BF16"}
TORCH_TO_CODE = {v[1]: k for k, v in DTYPES.items()}


# ---------------------------------------------------------------- paths and files


def display(path: Path | str) -> str:
    return str(path)


def resolve_within(path: Path, root: Path, what: str | None = None) -> Path:
    """``path`` with symlinks resolved; PathEscape unless it stays under ``root`` (itself resolved)."""
    root_r = Path(os.path.realpath(root))
    p = Path(os.path.realpath(path))
    if p != root_r and root_r not in p.parents:
        raise PathEscape(f"{what or display(path)}: resolves outside {display(root)}")
    return p


def check_regular(path: Path, what: str | None = None, max_bytes: int | None = None) -> int:
    """Size of ``path``; MissingFile / SpecialFile (a FIFO would hang a reader) / oversize checks."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MissingFile(f"{what or display(path)}: no such file") from None
    except OSError as e:
        raise MissingFile(f"{what or display(path)}: cannot stat ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SpecialFile(f"{what or display(path)}: not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise BadConfig(f"{what or display(path)}: {st.st_size} bytes exceeds the {max_bytes}-byte limit")
    return st.st_size


def safe_name(name: object, what: str) -> str:
    """A single path component (component names, shard names): no separators, no '..', not absolute."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise PathEscape(f"{what}: {name!r} is not a plain name inside the model folder")
    return name


def safe_relpath(rel: object, root: Path, what: str, base_dir: Path | None = None) -> Path:
    """``base_dir / rel`` (default ``root``) for an untrusted relative path; PathEscape if absolute or outside ``root``.

    Checked lexically (so a missing target still counts) and again after resolving symlinks.
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise PathEscape(f"{what}: path {str(rel)[:80]!r} is not a relative path")
    if os.path.isabs(rel) or rel.startswith(("~", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise PathEscape(f"{what}: absolute path {rel[:80]!r} refused")
    root_abs = Path(os.path.abspath(root))
    full = Path(os.path.normpath(os.path.join(os.path.abspath(base_dir or root), rel)))
    if full != root_abs and root_abs not in full.parents:
        raise PathEscape(f"{what}: path {rel[:80]!r} leaves {display(root)}")
    if os.path.lexists(full):
        resolve_within(full, root, f"{what}: {rel[:80]}")
    return full


def list_files(folder: Path, root: Path, what: str, max_files: int = 2000) -> dict[str, Path]:
    """Regular files under ``folder`` (relative posix path -> path), every one resolving inside ``root``."""
    out: dict[str, Path] = {}
    real = resolve_within(folder, root, what)
    for dirpath, dirnames, filenames in os.walk(real, followlinks=False):
        for d in list(dirnames):
            p = Path(dirpath) / d
            if p.is_symlink():
                # not descended into (followlinks=False), but a link leading out still marks a hostile folder
                resolve_within(p, root, f"{what}: {p.relative_to(real)}")
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue  # .gitattributes, editor droppings: never loaded
            p = Path(dirpath) / name
            rel = p.relative_to(real).as_posix()
            resolve_within(p, root, f"{what}: {rel}")
            check_regular(p, f"{what}: {rel}")
            out[rel] = p
            if len(out) > max_files:
                raise BadConfig(f"{what}: more than {max_files} files")
    return out


# ---------------------------------------------------------------- JSON


def _no_dupes(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            # a duplicate key means two parsers may disagree on what the file says
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _reject_constant(name):
    raise ValueError(f"non-finite number {name}")


def _depth(obj, limit: int, d: int = 0) -> int:
    if d > limit:
        raise ValueError("nested too deeply")
    if isinstance(obj, dict):
        for v in obj.values():
            _depth(v, limit, d + 1)
    elif isinstance(obj, list):
        for v in obj:
            _depth(v, limit, d + 1)
    return d


def parse_json_object(data: bytes | str, what: str, err=BadConfig) -> dict:
    """Strict JSON: UTF-8, an object at top level, no duplicate keys, no NaN/Infinity, bounded nesting."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        obj = json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_reject_constant)
        _depth(obj, MAX_JSON_DEPTH)
    except RecursionError:
        raise err(f"{what}: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise err(f"{what}: invalid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise err(f"{what}: JSON must be an object, got {type(obj).__name__}")
    return obj


def read_json(path: Path, root: Path, what: str | None = None, max_bytes: int = MAX_JSON_BYTES) -> dict:
    what = what or display(path)
    resolve_within(path, root, what)
    check_regular(path, what, max_bytes)
    with open(path, "rb") as f:
        return parse_json_object(f.read(max_bytes + 1), what)


# ---------------------------------------------------------------- pickles


def looks_like_pickle(path: Path) -> bool:
    """Pickle protocol 2+ (``\\x80`` + version) or a zip archive (torch.save's container).

    A safetensors header length can start with the same bytes (e.g. 896 = ``80 03 ...``), so a file whose first
    8 bytes are a plausible header length followed by ``{`` is never called a pickle.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) == 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if n <= min(size - 8, MAX_HEADER_BYTES):
            return False
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return head[:4] == b"PK\x03\x04"


def is_pickle_file(path: Path) -> bool:
    return path.suffix.lower() in PICKLE_SUFFIXES or looks_like_pickle(path)


def refuse_pickle(path: Path, what: str | None = None) -> None:
    raise PickleRefused(
        f"{what or display(path)}: pickle-based weights refused (unpickling can run code); "
        "convert to safetensors or pass allow_pickle=True"
    )


def load_pickle_state_dict(path: Path, what: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors from a pickle via torch's restricted ``weights_only`` unpickler, never the unrestricted one."""
    what = what or display(path)
    check_regular(path, what)
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's protocol notices are noise here; refusals raise below
            # mmap only exists for torch's zip container; legacy/raw pickles still go through weights_only
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()
        reason = next((m for m in msg if "Unsupported" in m or "global" in m.lower()), msg[0] if msg else "")
        raise PickleRefused(f"{what}: restricted unpickler rejected the file ({type(e).__name__}: {reason})") from None
    for _ in range(4):  # lightning/LDM checkpoints nest weights under "state_dict"
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UnsupportedFormat(f"{what}: pickle holds a {type(obj).__name__}, not a state dict")
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            if not isinstance(k, str):
                raise CorruptWeights(f"{what}: non-string key {k!r}")
            out[k] = v
    if not out:
        raise UnsupportedFormat(f"{what}: pickle holds no tensors")
    if len(out) > MAX_TENSORS:
        raise CorruptWeights(f"{what}: {len(out)} tensors exceeds the limit")
    return out


# ---------------------------------------------------------------- safetensors


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype][1]


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    def shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {k: (t.shape, t.dtype) for k, t in self.tensors.items()}


def read_safetensors_header(path: Path, what: str | None = None) -> SafetensorsHeader:
    """Parse and fully validate a safetensors header without reading tensor data."""
    what = what or display(path)
    size = check_regular(path, what)
    if size < 8:
        raise CorruptWeights(f"{what}: {size} bytes is too short for a safetensors file")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8 or n > MAX_HEADER_BYTES:
            raise CorruptWeights(f"{what}: header length {n} is out of bounds for a {size}-byte file")
        if n < 2:
            raise CorruptWeights(f"{what}: header length {n} is too small")
        raw = f.read(n)
    if len(raw) != n:
        raise CorruptWeights(f"{what}: truncated header")
    if raw[:1] != b"{":
        raise CorruptWeights(f"{what}: header is not a JSON object")
    header = parse_json_object(raw.rstrip(b" "), f"{what}: header", err=CorruptWeights)
    data_len = size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CorruptWeights(f"{what}: __metadata__ must map strings to strings")
    if len(header) > MAX_TENSORS:
        raise CorruptWeights(f"{what}: {len(header)} tensors exceeds the limit")
    tensors: dict[str, TensorInfo] = {}
    for name, info in header.items():
        if not name or len(name) > 1024:
            raise CorruptWeights(f"{what}: bad tensor name {name[:60]!r}")
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CorruptWeights(f"{what}: tensor {name!r} entry must have exactly dtype, shape, data_offsets")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in DTYPES:
            raise CorruptWeights(f"{what}: tensor {name!r} has unknown dtype {str(dt)[:20]!r}")
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(type(d) is int and 0 <= d < 2**48 for d in shape)
        ):
            raise CorruptWeights(f"{what}: tensor {name!r} has an invalid shape")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)):
            raise CorruptWeights(f"{what}: tensor {name!r} has invalid data_offsets")
        begin, end = offs
        if not 0 <= begin <= end <= data_len:
            raise CorruptWeights(f"{what}: tensor {name!r} offsets [{begin}, {end}] outside the {data_len}-byte data")
        nbytes = math.prod(shape) * DTYPES[dt][0]
        if end - begin != nbytes:
            raise CorruptWeights(f"{what}: tensor {name!r} spans {end - begin} bytes but shape x dtype needs {nbytes}")
        tensors[name] = TensorInfo(dt, tuple(shape), begin, end)
    # like the reference reader: tensors tile the data exactly, in order, with no overlap, gap or trailer
    pos = 0
    for name, t in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if t.begin != pos:
            kind = "overlaps another" if t.begin < pos else "leaves a gap before it"
            raise CorruptWeights(f"{what}: tensor {name!r} {kind}")
        pos = t.end
    if pos != data_len:
        raise CorruptWeights(f"{what}: data is {data_len} bytes but tensors cover {pos} (truncated or padded)")
    return SafetensorsHeader(Path(path), tensors, dict(metadata))


def load_safetensors(path: Path, header: SafetensorsHeader | None = None, what: str | None = None) -> dict:
    """Validate (unless ``header`` is given) then read all tensors."""
    from safetensors.torch import load_file

    from eebguard.models.errors import wrap_errors

    if header is None:
        header = read_safetensors_header(path, what)
    with wrap_errors(f"{what or display(path)}: safetensors read failed", CorruptWeights):
        return load_file(str(path))


def check_finite(named_tensors, where: str) -> None:
    """NonFiniteWeights naming the first parameter holding NaN or Inf."""
    from eebguard.models.errors import NonFiniteWeights

    for name, t in named_tensors:
        if not t.is_floating_point() or t.device.type == "meta" or t.numel() == 0:
            continue
        # one reduction per tensor: any NaN/Inf makes the sum non-finite; exact check only if it is
        if bool(torch.isfinite(t.sum(dtype=torch.float32))) or bool(torch.isfinite(t).all()):
            continue
        kind = "NaN" if bool(torch.isnan(t).any()) else "Inf"
        raise NonFiniteWeights(f"{where}: parameter {name} contains {kind}")
