"""fsutil's atomic writes: whole files or none, named temp files beside the destination."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ot2wheels import fsutil
from ot2wheels.errors import DiskError


def test_atomic_write_leaves_the_file_and_no_temp(tmp_path):
    dest = tmp_path / "sub" / "page.html"
    fsutil.atomic_write(dest, "hello")
    fsutil.atomic_write(dest, b"again", mode=0o600)
    assert dest.read_bytes() == b"again"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert sorted(p.name for p in dest.parent.iterdir()) == ["page.html"]


def test_temp_file_is_private_and_a_taken_name_is_skipped(tmp_path, monkeypatch):
    """The temp name is random; when it is taken (another writer's leftover) another is drawn,
    and the leftover is not touched."""
    draws = iter([b"\x00" * 6, b"\x00" * 6, b"\x01" * 6])
    monkeypatch.setattr(fsutil.os, "urandom", lambda n: next(draws))
    taken = tmp_path / f".page.html.{'00' * 6}.tmp"
    taken.write_bytes(b"someone else's")
    fd, name = fsutil._temp_beside(tmp_path / "page.html")
    os.close(fd)
    assert name == f"{tmp_path}/.page.html.{'01' * 6}.tmp"
    assert stat.S_IMODE(os.stat(name).st_mode) == 0o600
    assert taken.read_bytes() == b"someone else's"


def test_failed_write_names_the_path_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DiskError, match=str(blocker / "page.html")):
        fsutil.atomic_write(blocker / "page.html", "data")
    items = [(tmp_path / "a.html", b"a"), (blocker / "b.html", b"b")]
    with pytest.raises(DiskError):
        fsutil.atomic_write_all(items, staging=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no temp file, nothing renamed


def test_atomic_copy_keeps_bytes(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))  # more than one chunk
    fsutil.atomic_copy(src, tmp_path / "out" / "dest.bin")
    assert (tmp_path / "out" / "dest.bin").read_bytes() == src.read_bytes()
    fsutil.atomic_write_all([(tmp_path / "copy.bin", src)])
    assert Path(tmp_path / "copy.bin").read_bytes() == src.read_bytes()
