"""Result files: appended records survive crashes and full disks whole or not at all."""
from __future__ import annotations

import errno
import os

import pytest

from eebguard.records import append_jsonl, read_jsonl


def test_a_full_disk_leaves_no_half_record(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"source": "a"})
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        if fd_is(fd):
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def fd_is(fd):
        return os.fstat(fd).st_ino == os.stat(path).st_ino

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        append_jsonl(path, {"source": "b", "big": "x" * 1000})
    monkeypatch.undo()
    assert path.read_bytes() == before  # cut back to the last whole record
    append_jsonl(path, {"source": "c"})
    assert [r["source"] for r in read_jsonl(path)] == ["a", "c"]
