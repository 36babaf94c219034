"""extract(): real tar and zip archives, benign and hostile."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from hostile import symlink_chain_tarball

from ot2wheels import archive as archive_mod
from ot2wheels.archive import extract
from ot2wheels.errors import UnsafeArchiveError


@pytest.fixture(autouse=True, params=["data-filter", "fallback"])
def mode(request, monkeypatch):
    """Every test runs with tarfile's data filter and with the fallback for CPython < 3.11.4."""
    if request.param == "data-filter" and not archive_mod.HAS_DATA_FILTER:
        pytest.skip("this CPython has no tarfile.data_filter")
    if request.param == "fallback":
        monkeypatch.setattr(archive_mod, "HAS_DATA_FILTER", False)
    return request.param


def _tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """members: (kind, name, content-or-link-target) with kind in file|dir|sym|hard."""
    with tarfile.open(path, "w:gz") as tf:
        for kind, name, value in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                data = value.encode()
                ti.size = len(data)
                ti.mode = 0o4777 if name.endswith("setuid") else 0o755
                ti.uid, ti.gid = 4321, 4321
                tf.addfile(ti, io.BytesIO(data))
                continue
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, value
            elif kind == "hard":
                ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, value, 0o755
            tf.addfile(ti)
    return path


def _nothing_left(parent: Path, dest: Path) -> None:
    assert not dest.exists()
    assert [p.name for p in parent.iterdir() if p.name.endswith(".tmp")] == []


def test_benign_tar_with_relative_links(tmp_path):
    arc = _tar(tmp_path / "ok.tar.gz", [
        ("file", "sdk/setuid", "x"),
        ("dir", "sdk", ""),
        ("dir", "sdk/bin", ""),
        ("file", "sdk/bin/tool", "#!/bin/sh\necho hi\n"),
        ("sym", "sdk/bin/tool-link", "tool"),
        ("sym", "sdk/lib", "bin/../bin"),
        ("hard", "sdk/bin/tool2", "sdk/bin/tool"),
    ])
    out = extract(arc, tmp_path / "out")
    assert (out / "sdk/bin/tool").read_text() == "#!/bin/sh\necho hi\n"
    assert (out / "sdk/bin/tool-link").is_symlink()
    assert (out / "sdk/bin/tool-link").resolve() == (out / "sdk/bin/tool").resolve()
    assert (out / "sdk/bin/tool2").stat().st_nlink == 2
    assert (out / "sdk/bin/tool").stat().st_uid == os.getuid()  # owners in the archive ignored
    assert (out / "sdk/bin/tool").stat().st_mode & 0o100  # executable bit kept
    assert (out / "sdk/setuid").stat().st_mode & 0o7022 == 0  # no setuid, no group/other write


@pytest.mark.parametrize(
    "members, culprit",
    [
        ([("file", "/etc/evil", "x")], "/etc/evil"),
        ([("file", "sdk/../../evil", "x")], "sdk/../../evil"),
        ([("file", "../evil", "x")], "../evil"),
        ([("dir", "sdk", ""), ("sym", "sdk/escape", "../../.."), ("file", "sdk/ok", "x")], "sdk/escape"),
        ([("sym", "abs", "/etc/passwd")], "abs"),
        ([("hard", "h", "../outside")], "h"),
        # a link that stays inside, then a file written through it that would not
        ([("sym", "up", "."), ("file", "up/../x", "x")], "up/../x"),
    ],
)
def test_hostile_tar_refused_and_nothing_extracted(tmp_path, members, culprit):
    arc = _tar(tmp_path / "bad.tar.gz", [("file", "sdk-first", "harmless"), *members])
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as exc:
        extract(arc, dest)
    assert repr(culprit) in str(exc.value)
    _nothing_left(tmp_path, dest)
    assert not (tmp_path.parent / "evil").exists() and not (tmp_path / "evil").exists()


def test_zip_benign_and_hostile(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("pkg/a.txt", "A")
    assert (extract(good, tmp_path / "g") / "pkg/a.txt").read_text() == "A"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("pkg/a.txt", "A")
        zf.writestr("../evil.txt", "E")
    with pytest.raises(UnsafeArchiveError, match=r"'../evil.txt'"):
        extract(bad, tmp_path / "b")
    _nothing_left(tmp_path, tmp_path / "b")


def test_truncated_and_non_archives(tmp_path):
    arc = _tar(tmp_path / "ok.tar.gz", [("file", f"f{i}", "x" * 5000 + str(i)) for i in range(50)])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(arc.read_bytes()[: arc.stat().st_size // 2])
    with pytest.raises(UnsafeArchiveError, match=r"truncated or damaged|not a tar or zip"):
        extract(cut, tmp_path / "c")
    _nothing_left(tmp_path, tmp_path / "c")
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello")
    with pytest.raises(UnsafeArchiveError, match="not a tar or zip"):
        extract(junk, tmp_path / "j")


def test_existing_destination_is_not_overwritten(tmp_path):
    arc = _tar(tmp_path / "ok.tar.gz", [("file", "a", "x")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("mine")
    with pytest.raises(UnsafeArchiveError, match="already exists"):
        extract(arc, tmp_path / "out")
    assert (tmp_path / "out" / "keep").read_text() == "mine"


def test_symlink_chain_path_max_escape_is_refused(tmp_path):
    """CVE-2025-4517: the PATH_MAX symlink chain fools realpath and the data filter of
    CPython < 3.11.13; the member table refuses it before anything is written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    arc = symlink_chain_tarball(tmp_path / "chain.tar", outside)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="passes through the symlink member 'a'"):
        extract(arc, dest)
    assert list(outside.iterdir()) == []
    _nothing_left(tmp_path, dest)


@pytest.mark.parametrize(
    "members, culprit",
    [
        # resolved through another symlink member: a -> d, then b -> a/../.. leaves
        ([("dir", "d", ""), ("sym", "a", "d"), ("sym", "b", "a/../..")], "b"),
        ([("sym", "loop1", "loop2"), ("sym", "loop2", "loop1")], "loop1"),
        ([("file", "f", "x"), ("sym", "f", "elsewhere")], "f"),
        ([("sym", "s", "x"), ("hard", "h", "s")], "h"),
    ],
    ids=["chain", "loop", "file-then-link", "hardlink-to-symlink"],
)
def test_links_resolved_by_the_member_table(tmp_path, members, culprit):
    arc = _tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(UnsafeArchiveError) as exc:
        extract(arc, tmp_path / "out")
    assert repr(culprit) in str(exc.value)
    _nothing_left(tmp_path, tmp_path / "out")
