"""sdk.pull / sdk.info against a small SDK-shaped tarball served from 127.0.0.1.

These use the stand-in's layout with an (almost) empty sysroot, so they run in seconds; the
full stand-in with a Debian armhf sysroot is exercised by test_buildroot.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from rangeserver import serve
from sdk_standin import (
    FILENAME,
    PLACEHOLDER,
    TOPDIR,
    TRIPLET,
    build_tree,
    make_tarball,
    standin_sdk_toml,
)

from ot2wheels import sdk
from ot2wheels.errors import DownloadError, ToolchainError, UnsafeArchiveError
from ot2wheels.paths import Layout

REPO = Path(__file__).resolve().parents[1]
PY = "3.10"


def _project(tmp: Path, sha256: str = "", url: str = "") -> Layout:
    root = tmp / "project"
    (root / "toolchain").mkdir(parents=True, exist_ok=True)
    (root / "toolchain" / "targets.toml").write_text((REPO / "toolchain" / "targets.toml").read_text())
    (root / "toolchain" / "sdk.toml").write_text(standin_sdk_toml("ot2", PY, sha256, url))
    return Layout.discover(root=root, cache=tmp / "cache")


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    d = tmp_path_factory.mktemp("mini")
    tree = build_tree(d / "tree", Path(sys.executable), PY, sysroot=None)
    # pad with incompressible data so the transfer is big enough to be cut mid-way
    (tree / TRIPLET / "sysroot" / "usr" / "lib" / "blob.bin").write_bytes(os.urandom(1_500_000))
    return make_tarball(tree, d / "srv" / FILENAME, PY, "2.31")


def _no_placeholder(root: Path) -> list[str]:
    hits = subprocess.run(["grep", "-rlI", "-F", PLACEHOLDER, str(root)], capture_output=True, text=True)
    return hits.stdout.split()


def _installs(layout: Layout) -> list[str]:
    base = sdk.sdk_dir(layout, "ot2")
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.is_symlink()
                  and p.name != "downloads") if base.exists() else []


def test_real_pin_is_unpinned_and_says_what_to_do(tmp_path):
    layout = Layout.discover(root=REPO, cache=tmp_path)
    pin = sdk.load_pin(layout)
    assert pin.filename == "arm-buildroot-linux-gnueabihf_sdk-buildroot.tar.gz" and pin.python == "3.10"
    with pytest.raises(ToolchainError, match="no sha256 pinned yet.*--sha256"):
        sdk.pull(layout, progress=False, log=lambda *_: None)
    assert sdk.info(layout).matches_pin is None
    assert "NOT PINNED" in "\n".join(sdk.info(layout).lines())


def test_clean_pull_relocates_and_publishes(mini, tmp_path):
    layout = _project(tmp_path, sha256=mini.sha256)
    with serve(mini.tarball.parent) as srv:
        got = sdk.pull(layout, url=srv.url(FILENAME), progress=False, log=lambda *_: None)
    assert got.root.name == TOPDIR and got.sha256 == mini.sha256
    assert (got.root / "share/buildroot/sdk-location").read_text().strip() == str(got.root)
    assert _no_placeholder(got.root) == []
    # environment-setup now works from the new place: it finds the SDK's own gcc
    out = subprocess.run(["bash", "-c", f'source "{got.environment_setup}" >/dev/null; command -v "$CC"'],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(got.root / "bin" / f"{TRIPLET}-gcc")
    info = sdk.info(layout)
    assert info.matches_pin is True and info.sdk.root == got.root
    assert "matches the pin: yes" in "\n".join(info.lines())
    assert _installs(layout) == [got.root.parent.name]


def test_resume_after_cut_connection(mini, tmp_path):
    layout = _project(tmp_path, sha256=mini.sha256)
    with serve(mini.tarball.parent) as srv:
        srv.state.cut_once["/" + FILENAME] = mini.size // 2
        got = sdk.pull(layout, url=srv.url(FILENAME), progress=False, log=lambda *_: None)
        ranges = [r for _, r in srv.state.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={mini.size // 2}-"
    assert _no_placeholder(got.root) == []


def test_wrong_hash_installs_nothing(mini, tmp_path):
    layout = _project(tmp_path, sha256="1" * 64)
    with serve(mini.tarball.parent) as srv:
        with pytest.raises(DownloadError, match="sha256 mismatch"):
            sdk.pull(layout, url=srv.url(FILENAME), progress=False, log=lambda *_: None)
    assert sdk.installed(layout) is None and _installs(layout) == []
    assert [p.name for p in (sdk.sdk_dir(layout, "ot2") / "downloads").glob(FILENAME + "*")
            if not p.name.endswith(".lock")] == []


def _hostile(mini_tar: Path, out: Path, evil: tarfile.TarInfo) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(mini_tar) as src, tarfile.open(out, "w:gz") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        dst.addfile(evil, io.BytesIO(b"pwned") if evil.isfile() else None)
    return out


@pytest.mark.parametrize("kind", ["dotdot", "symlink"])
def test_hostile_archive_is_refused(mini, tmp_path, kind):
    evil = tarfile.TarInfo(f"{TOPDIR}/../../../escaped" if kind == "dotdot" else f"{TOPDIR}/bin/escape")
    if kind == "dotdot":
        evil.size = 5
    else:
        evil.type, evil.linkname = tarfile.SYMTYPE, "../../../../../../etc"
    bad = _hostile(mini.tarball, tmp_path / "srv" / FILENAME, evil)
    layout = _project(tmp_path, sha256=hashlib.sha256(bad.read_bytes()).hexdigest())
    with pytest.raises(UnsafeArchiveError, match=repr(evil.name).replace(".", r"\.")):
        sdk.pull(layout, file=bad, progress=False, log=lambda *_: None)
    assert sdk.installed(layout) is None and _installs(layout) == []
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_failed_relocation_keeps_previous_sdk(mini, tmp_path):
    layout = _project(tmp_path, sha256=mini.sha256)
    first = sdk.pull(layout, file=mini.tarball, progress=False, log=lambda *_: None)
    # a second SDK whose relocate-sdk.sh fails
    tree = build_tree(tmp_path / "broken", Path(sys.executable), PY, sysroot=None)
    (tree / "relocate-sdk.sh").write_text("#!/bin/sh\necho 'Something went wrong' >&2\nexit 1\n")
    broken = make_tarball(tree, tmp_path / "broken.tar.gz", PY, "2.31")
    with pytest.raises(ToolchainError, match="(?s)relocate-sdk.sh of .*broken.tar.gz failed.*Something went wrong"):
        sdk.pull(layout, file=broken.tarball, sha256=broken.sha256, progress=False, log=lambda *_: None)
    now = sdk.installed(layout)
    assert now is not None and now.root == first.root and _installs(layout) == [first.root.parent.name]
    # same file again: nothing to do
    assert sdk.pull(layout, file=mini.tarball, progress=False, log=lambda *_: None).root == first.root


def test_new_sdk_replaces_old_and_info_reports_mismatch(mini, tmp_path):
    layout = _project(tmp_path, sha256=mini.sha256)
    first = sdk.pull(layout, file=mini.tarball, progress=False, log=lambda *_: None)
    tree = build_tree(tmp_path / "other", Path(sys.executable), PY, sysroot=None)
    other = make_tarball(tree, tmp_path / "other.tar.gz", PY, "2.31")
    second = sdk.pull(layout, file=other.tarball, sha256=other.sha256, progress=False, log=lambda *_: None)
    assert second.root != first.root and not first.root.exists()
    assert _installs(layout) == [second.root.parent.name]
    info = sdk.info(layout)
    assert info.matches_pin is False and "matches the pin: NO" in "\n".join(info.lines())


def _invoke(layout: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OT2WHEELS_CACHE": str(layout.cache)}
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args],
                          cwd=layout.root, env=env, capture_output=True, text=True, timeout=120)


def test_invoke_tasks(mini, tmp_path):
    layout = _project(tmp_path)  # unpinned
    r = _invoke(layout, "sdk.pull", "--url", "http://127.0.0.1:9/x.tar.gz")
    assert r.returncode == 1 and "no sha256 pinned yet" in r.stderr
    r = _invoke(layout, "sdk.info")
    assert r.returncode == 0 and "installed: nothing" in r.stdout
    with serve(mini.tarball.parent) as srv:
        r = _invoke(layout, "sdk.pull", "--url", srv.url(FILENAME), "--sha256", mini.sha256, "--no-progress")
    assert r.returncode == 0, r.stderr
    r = _invoke(layout, "sdk.info")
    assert r.returncode == 0 and f"sha256 {mini.sha256}" in r.stdout
    assert "unknown (no pin to compare with)" in r.stdout


@pytest.mark.parametrize("kib, error, message", [
    (800, DownloadError, "disk full while writing .*Free some space"),  # smaller than the tarball
    (2300, ToolchainError, "disk full while unpacking the SDK.*nothing was installed"),  # tarball fits, contents not
], ids=["while-downloading", "while-unpacking"])
def test_disk_full(mini, tmp_path, small_disk, kib, error, message):
    disk = small_disk(kib)
    layout = _project(tmp_path, sha256=mini.sha256)
    layout = Layout(root=layout.root, cache=disk, dist=layout.dist)
    with serve(mini.tarball.parent) as srv:
        with pytest.raises(error, match=message):
            sdk.pull(layout, url=srv.url(FILENAME), progress=False, log=lambda *_: None)
    assert sdk.installed(layout) is None and _installs(layout) == []
    assert not list(disk.rglob("*.part"))
