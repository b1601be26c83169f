"""Result files written next to untrusted input: JSON lines that survive a crash, and output files that
are never written through a symlink someone planted in the output folder.

Every writer here refuses to follow a link at the final path component (``O_NOFOLLOW``) and replaces
whole files through a fresh temporary file in the same folder (``mkstemp``: created exclusively, so a
planted ``*.tmp`` link is never opened), then ``os.replace``, which swaps the name itself.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnsafeOutput(OSError):
    """An output path that is a symlink or not a regular file: nothing was written."""


def _open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    try:
        return os.open(path, flags | _NOFOLLOW, mode)
    except OSError:
        if os.path.islink(path):
            raise UnsafeOutput(f"{path}: is a symlink; eebguard never writes through links in its output folder") from None
        raise


def check_output_dir(path: Path) -> Path:
    """An output folder that may be created or written into: not a symlink, not a file."""
    path = Path(path)
    if os.path.islink(path):
        raise UnsafeOutput(f"{path}: the output folder is a symlink; give the real folder")
    if path.exists() and not path.is_dir():
        raise UnsafeOutput(f"{path}: exists and is not a folder")
    return path


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically; a link at ``path`` is replaced, never followed."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(f"{path}: is a folder")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def append_jsonl(path: Path, obj: dict) -> None:
    """Append one JSON line and fsync it: a crash never loses a finished model. A line torn by an
    earlier crash is closed first, so it cannot swallow this one; a write that fails (a full disk) is
    cut back to the record before it, so it leaves no half line behind."""
    path = Path(path)
    fd = _open_nofollow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        data = (("\n" if torn else "") + json.dumps(obj, sort_keys=True) + "\n").encode("utf-8")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Replace ``path`` with ``rows``, one JSON object a line (temporary file, fsync, rename: a crash
    leaves either the old file or the new one)."""
    write_text(Path(path), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _read_bytes(path: Path) -> bytes | None:
    try:
        fd = _open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def jsonl_lines(path: Path) -> tuple[list[dict], int]:
    """(the well-formed object lines of ``path``, how many lines were not): a line torn by a crash or
    mangled by hand is counted, never raised."""
    data = _read_bytes(Path(path))
    if not data:
        return [], 0
    rows, bad = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(obj, dict):
            rows.append(obj)
        else:
            bad += 1
    return rows, bad


def read_jsonl(path: Path) -> list[dict]:
    """The object lines of ``path`` (none if it is missing); unparsable lines are left out."""
    return jsonl_lines(path)[0]


def repair_jsonl(path: Path) -> int:
    """Rewrite ``path`` without its unparsable lines (a record torn by a kill); returns how many were dropped."""
    rows, bad = jsonl_lines(path)
    if bad:
        write_jsonl(Path(path), rows)
    return bad


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
# bidirectional overrides reorder what a terminal shows: a name could hide its real extension
_CONTROL.update({c: f"\\u{c:04x}" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))})


def printable(text: object) -> str:
    """``text`` safe to print in a console, log or report line: control characters, bidirectional
    overrides and undecodable file-name bytes (surrogate escapes) written as escapes, so a file name
    cannot forge report lines or move the cursor."""
    s = str(text)
    if any("\ud800" <= ch <= "\udfff" for ch in s):
        try:
            raw = s.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
            raw = s.encode("utf-8", "backslashreplace")
        s = raw.decode("utf-8", "backslashreplace")
    return s.translate(_CONTROL)
