"""sdk.pull / sdk.info against a small SDK-shaped tarball served from 127.0.0.1.

These use the stand-in's layout with an (almost) empty sysroot, so they run in seconds; the
full stand-in with a Debian armhf sysroot is exercised by test_buildroot.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hostile import symlink_chain_tarball
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
from ot2wheels.errors import ConfigError, DownloadError, ToolchainError, UnsafeArchiveError
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


def test_real_pin_names_opentrons_url_and_trusts_on_first_use(tmp_path):
    layout = Layout.discover(root=REPO, cache=tmp_path)
    pin = sdk.load_pin(layout)
    assert pin.filename == "arm-buildroot-linux-gnueabihf_sdk-buildroot.tar.gz" and pin.python == "3.10"
    # the url Opentrons' own builder image downloads (it is in sdk.toml, named once)
    assert pin.url.startswith("https://") and pin.url.endswith("/opentrons-buildroot/" + pin.filename)
    assert pin.lock_file == REPO / "toolchain" / "sdk.lock"
    # Nothing checked it from here: either nothing is pinned yet, or a committed sdk.lock did it.
    assert pin.status in (sdk.PinStatus.UNPINNED, sdk.PinStatus.TRUSTED_ON_FIRST_USE)
    assert (pin.status is sdk.PinStatus.TRUSTED_ON_FIRST_USE) == pin.lock_file.is_file()
    if pin.status is sdk.PinStatus.UNPINNED:
        assert "pin: unpinned" in "\n".join(sdk.info(layout).lines())


def test_trust_on_first_use_then_verify_then_refuse_tampered(mini, tmp_path):
    """From a fresh clone: first pull (no pin) records sdk.lock, the second is verified against
    it, a tampered tarball is refused and the installed SDK stays."""
    with serve(mini.tarball.parent) as srv:
        layout = _project(tmp_path, url=srv.url(FILENAME))
        lock = layout.root / "toolchain" / "sdk.lock"
        assert not lock.exists()
        r = _invoke(layout, "sdk.pull", "--no-progress")
        assert r.returncode == 0, r.stderr
        assert "WARNING: TRUST ON FIRST USE" in r.stdout and f"sha256 {mini.sha256}" in r.stdout
        entry = sdk.load_lock(lock)["ot2"]
        assert (entry.sha256, entry.size, entry.url) == (mini.sha256, mini.size, srv.url(FILENAME))
        assert "commit it" in r.stdout and str(lock) in r.stdout
        info = _invoke(layout, "sdk.info").stdout
        assert "pin: trusted-on-first-use" in info and f"sha256 {mini.sha256}" in info
        assert "checked at install against: nothing (trusted on first use)" in info
        assert "verified (matches the pin): yes" in info
        first = sdk.installed(layout)
        assert first is not None and first.sha256 == mini.sha256
        locked_text = lock.read_text()

        # again: verified against the lock, no warning, nothing re-trusted
        r = _invoke(layout, "sdk.pull", "--no-progress")
        assert r.returncode == 0, r.stderr
        assert "TRUST ON FIRST USE" not in r.stdout and "already installed" in r.stdout
        assert lock.read_text() == locked_text

        # the served file is tampered with, and so is the cached copy (or the cache is fresh)
        tampered = bytearray(mini.tarball.read_bytes())
        tampered[len(tampered) // 2] ^= 0xFF
        mini_bytes = mini.tarball.read_bytes()
        try:
            mini.tarball.write_bytes(bytes(tampered))
            cached = sdk.sdk_dir(layout, "ot2") / "downloads" / FILENAME
            cached.write_bytes(bytes(tampered))
            r = _invoke(layout, "sdk.pull", "--no-progress")
            assert r.returncode == 1 and "sha256 mismatch" in r.stderr and mini.sha256 in r.stderr
            assert "TRUST ON FIRST USE" not in r.stdout
            fresh = Layout(root=layout.root, cache=tmp_path / "fresh-cache", dist=layout.dist)
            r = _invoke(fresh, "sdk.pull", "--no-progress")
            assert r.returncode == 1 and "sha256 mismatch" in r.stderr
            assert sdk.installed(fresh) is None
        finally:
            mini.tarball.write_bytes(mini_bytes)
    now = sdk.installed(layout)
    assert now is not None and now.root == first.root and now.sha256 == mini.sha256
    assert lock.read_text() == locked_text and _installs(layout) == [first.root.parent.name]


def test_sha256_option_overrides_the_lock_and_leaves_it(mini, tmp_path):
    layout = _project(tmp_path, url="")
    sdk.pull(layout, file=mini.tarball, progress=False, log=lambda *_: None)  # trusted, locked
    lock = layout.root / "toolchain" / "sdk.lock"
    before = lock.read_text()
    assert sdk.load_pin(layout).status is sdk.PinStatus.TRUSTED_ON_FIRST_USE
    tree = build_tree(tmp_path / "other", Path(sys.executable), PY, sysroot=None)
    other = make_tarball(tree, tmp_path / "other.tar.gz", PY, "2.31")
    with pytest.raises(DownloadError, match=f"the pin says {mini.size}"):  # the lock holds
        sdk.pull(layout, file=other.tarball, progress=False, log=lambda *_: None)
    got = sdk.pull(layout, file=other.tarball, sha256=other.sha256, progress=False, log=lambda *_: None)
    assert got.sha256 == other.sha256 and got.manifest["verified_by"] == "--sha256"
    assert lock.read_text() == before
    assert sdk.info(layout).matches_pin is False


def test_unpinned_sdk_that_fails_to_install_is_not_trusted(tmp_path):
    layout = _project(tmp_path)
    tree = build_tree(tmp_path / "broken", Path(sys.executable), PY, sysroot=None)
    (tree / "relocate-sdk.sh").write_text("#!/bin/sh\nexit 1\n")
    broken = make_tarball(tree, tmp_path / "broken.tar.gz", PY, "2.31")
    said: list[str] = []
    with pytest.raises(ToolchainError, match=r"relocate-sdk.sh of .* failed"):
        sdk.pull(layout, file=broken.tarball, progress=False, log=said.append)
    assert any("TRUST ON FIRST USE" in line for line in said)  # it did warn
    assert not (layout.root / "toolchain" / "sdk.lock").exists() and sdk.installed(layout) is None
    assert sdk.load_pin(layout).status is sdk.PinStatus.UNPINNED


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('size = ', 'sise = '), r"sdk.lock: sdk.ot2: unknown field\(s\) \['sise'\]"),
    (lambda t: t.replace('sha256 = "', 'sha256 = "zz'), r"sdk.lock: sdk.ot2.sha256: .* is not a sha256"),
    (lambda t: "version = 1\n" + t, r"sdk.lock: unknown key\(s\) \['version'\]; allowed: \['sdk'\]"),
    (lambda t: t.replace('url = ""', 'url = "https://old.invalid/sdk.tar.gz"'),
     r"sdk.lock: \[sdk.ot2\] was trusted for .* from https://old.invalid/sdk.tar.gz.*delete that entry"),
])
def test_bad_lock_is_a_clear_error(mini, tmp_path, edit, message):
    layout = _project(tmp_path, url="")
    sdk.pull(layout, file=mini.tarball, progress=False, log=lambda *_: None)
    lock = layout.root / "toolchain" / "sdk.lock"
    lock.write_text(edit(lock.read_text()))
    with pytest.raises(ConfigError, match=message):
        sdk.load_pin(layout)


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
    assert "verified (matches the pin): yes" in "\n".join(info.lines())
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
    with pytest.raises(ToolchainError, match=r"(?s)relocate-sdk.sh of .*broken.tar.gz failed.*Something went wrong"):
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
    assert info.matches_pin is False and "verified (matches the pin): NO" in "\n".join(info.lines())


def _invoke(layout: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OT2WHEELS_CACHE": str(layout.cache)}
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), *args],
                          cwd=layout.root, env=env, capture_output=True, text=True, timeout=120)


def test_invoke_tasks(mini, tmp_path):
    layout = _project(tmp_path)  # unpinned, no url
    r = _invoke(layout, "sdk.pull")
    assert r.returncode == 1 and "has no url; pass --url URL" in r.stderr
    r = _invoke(layout, "sdk.info")
    assert r.returncode == 0 and "installed: nothing" in r.stdout and "pin: unpinned" in r.stdout
    with serve(mini.tarball.parent) as srv:
        r = _invoke(layout, "sdk.pull", "--url", srv.url(FILENAME), "--sha256", mini.sha256, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "TRUST ON FIRST USE" not in r.stdout and not (layout.root / "toolchain" / "sdk.lock").exists()
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


def test_symlink_chain_path_max_escape_is_refused(tmp_path):
    """CVE-2025-4517 through `invoke sdk.pull --file`: refused, nothing written outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    arc = symlink_chain_tarball(tmp_path / "chain.tar", outside)
    layout = _project(tmp_path)
    sha = hashlib.sha256(arc.read_bytes()).hexdigest()
    r = _invoke(layout, "sdk.pull", "--file", str(arc), "--sha256", sha)
    assert r.returncode == 1
    assert "refusing to extract member" in r.stderr and "Traceback" not in r.stderr
    assert list(outside.iterdir()) == []
    assert sdk.installed(layout) is None and _installs(layout) == []


def test_moved_cache_sdk_is_detected_and_pull_installs_it_again(mini, tmp_path):
    """A relocated SDK names its install path: a copied cache says so, and pull fixes it."""
    layout = _project(tmp_path, sha256=mini.sha256)
    with serve(mini.tarball.parent) as srv:
        first = sdk.pull(layout, url=srv.url(FILENAME), progress=False, log=lambda *_: None)
        moved = Layout(root=layout.root, cache=tmp_path / "moved-cache", dist=layout.dist)
        shutil.copytree(layout.cache, moved.cache, symlinks=True)
        with pytest.raises(ToolchainError, match=r"relocated to .* the cache was moved or copied"):
            sdk.require_installed(moved)
        again = sdk.pull(moved, url=srv.url(FILENAME), progress=False, log=lambda *_: None)
    assert again.root.is_relative_to(moved.cache) and first.root.is_relative_to(layout.cache)
    assert sdk.require_installed(moved).root == again.root
    assert (again.root / "share/buildroot/sdk-location").read_text().strip() == str(again.root)
