"""The build Python comes with the toolchain: a host CPython when there is one, else the suite's
own amd64 CPython unpacked from its .debs, else a uv-managed one; one clear line when none."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO, serve_directory, sha
from elftools.elf.elffile import ELFFile

from ot2wheels import buildenv, hostpython, stale
from ot2wheels.errors import ConfigError, ToolchainError
from ot2wheels.paths import Layout
from ot2wheels.targets import load_targets
from ot2wheels.toolchains import buildpython
from ot2wheels.toolchains.buildpython import ENV, BuildPython, Origin
from ot2wheels.toolchains.debian import DebianToolchain

TARGETS = load_targets(REPO / "toolchain" / "targets.toml")


def without_pyenv(env: dict[str, str], empty: Path) -> dict[str, str]:
    """`env` as on a fresh machine: PYENV_ROOT empty, no PATH entry of pyenv's, nor of a
    virtual environment (nox's session venv is one, and its python3.11 is pyenv's)."""
    empty.mkdir(exist_ok=True)
    path = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                           if ".pyenv" not in p and not (Path(p).parent / "pyvenv.cfg").is_file())
    return {**{k: v for k, v in env.items() if k != ENV}, "PATH": path, "PYENV_ROOT": str(empty)}


@pytest.fixture
def no_pyenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in without_pyenv(dict(os.environ), tmp_path / "empty-pyenv").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(ENV, raising=False)


def runpath(path: Path) -> str:
    with path.open("rb") as f:
        dynamic = ELFFile(f).get_section_by_name(".dynamic")
        return next((t.runpath for t in dynamic.iter_tags() if t.entry.d_tag == "DT_RUNPATH"), "")


# -- unit ---------------------------------------------------------------------------------
def test_sources_from_env_orders_narrows_or_names_an_executable() -> None:
    assert buildpython.sources_from_env({}) == (Origin.HOST, Origin.DEBIAN, Origin.UV)
    assert buildpython.sources_from_env({ENV: "debian"}) == (Origin.DEBIAN,)
    assert buildpython.sources_from_env({ENV: " uv, host "}) == (Origin.UV, Origin.HOST)
    assert buildpython.sources_from_env({ENV: "/opt/py/bin/python3.10"}) == Path("/opt/py/bin/python3.10")
    with pytest.raises(ConfigError) as err:
        buildpython.sources_from_env({ENV: "host,conda"})
    assert "\n" not in str(err.value) and ENV in str(err.value) and "debian" in str(err.value)


def test_a_python_no_source_offers_is_one_clear_line(no_pyenv, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV, "host")
    old = dataclasses.replace(TARGETS.get("bookworm-armhf"), name="old", python="3.4")
    with pytest.raises(ToolchainError) as err:
        buildpython.find(old, tmp_path / "cache")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("no build CPython 3.4 for target old (host: no python3.4 on PATH or in pyenv)")
    assert "uv python install 3.4" in msg and f"{ENV}=/path/to/python3.4" in msg
    assert not (tmp_path / "cache" / "pythons").exists()


@pytest.mark.skipif(not Path("/usr/bin/python3.11").exists(), reason="not a Debian 12 host")
def test_debian_12_system_python_is_bookworms_build_python_without_pyenv(no_pyenv, tmp_path: Path) -> None:
    found = buildpython.find(TARGETS.get("bookworm-armhf"), tmp_path / "cache")
    assert found is not None
    assert found.path.resolve() == Path("/usr/bin/python3.11").resolve()
    assert (found.origin, found.detail) == (Origin.HOST, "PATH")
    assert found.version.startswith("3.11.")
    assert not (tmp_path / "cache").exists()  # nothing acquired: the host had it


def test_pyenv_shims_on_path_stand_for_pyenv_versions_at_their_place(monkeypatch, tmp_path: Path) -> None:
    """A shim is never run (bash, ~0.2 s per call): pyenv's versions take its place in PATH order."""
    root, other = tmp_path / "pyenv", tmp_path / "bin"
    for exe in (root / "shims" / "python3.11", root / "versions" / "3.11.1" / "bin" / "python3.11",
                root / "versions" / "3.11.10" / "bin" / "python3.11", other / "python3.11"):
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\nexit 1\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PYENV_ROOT", str(root))
    monkeypatch.setenv("PATH", os.pathsep.join([str(root / "shims"), str(other)]))
    assert hostpython.candidates("3.11") == [root / "versions" / "3.11.10" / "bin" / "python3.11",
                                             root / "versions" / "3.11.1" / "bin" / "python3.11",
                                             other / "python3.11"]
    monkeypatch.setenv("PATH", str(other))  # pyenv not on PATH: its versions still come, last
    assert hostpython.candidates("3.11")[0] == other / "python3.11"
    assert hostpython.find_host("3.11") is None  # none of them is a working CPython


def test_a_named_executable_must_have_the_targets_version(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV, sys.executable)  # CPython 3.11+, bullseye needs 3.9
    with pytest.raises(ToolchainError) as err:
        buildpython.find(TARGETS.get("bullseye-armhf"), tmp_path)
    assert "\n" not in str(err.value) and "the target needs 3.9" in str(err.value)
    monkeypatch.setenv(ENV, str(tmp_path / "nothing"))
    with pytest.raises(ToolchainError, match="not a working CPython"):
        buildpython.find(TARGETS.get("bullseye-armhf"), tmp_path)


def test_toolchain_info_says_which_build_python_and_where_from(checkout_copy: Path, tmp_path: Path) -> None:
    """Nothing is acquired by `info`: a given executable is shown, a missing Debian one is not yet."""
    here = "{}.{}".format(*sys.version_info[:2])
    text = (checkout_copy / "toolchain" / "targets.toml").read_text()
    text = text.replace('python = "3.11"', f'python = "{here}"', 1)  # bookworm-armhf: our own X.Y
    (checkout_copy / "toolchain" / "targets.toml").write_text(text)
    base = {**os.environ, "OT2WHEELS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO / "src")}

    def info(target: str, source: str) -> str:
        run = subprocess.run([sys.executable, "-m", "invoke", "toolchain.info", "--target", target],
                             cwd=checkout_copy, capture_output=True, text=True, env={**base, ENV: source})
        assert run.returncode == 0, run.stderr
        return run.stdout

    out = info("bookworm-armhf", sys.executable)
    assert f"  build python: {sys.executable} (CPython {here}." in out and f"; given: {ENV})" in out
    out = info("bullseye-armhf", "debian")
    assert "  build python: not acquired yet (`invoke toolchain.setup` gets it)" in out
    assert not (tmp_path / "cache" / "pythons").exists()


def test_toolchain_info_without_target_lists_every_target_planning_ones_too(checkout_copy: Path,
                                                                          tmp_path: Path) -> None:
    """`invoke toolchain.info` as the README prints it: every target, a planning one (flex)
    shown as such instead of failing the whole listing."""
    # debian: `info` reports without acquiring, whatever this host has installed
    env = {**os.environ, "OT2WHEELS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO / "src"),
           ENV: "debian"}
    run = subprocess.run([sys.executable, "-m", "invoke", "toolchain.info"], cwd=checkout_copy,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "flex: CPython 3.10" in run.stdout
    assert "build python: none: a planning target (`invoke plan --target flex`)" in run.stdout
    assert "bookworm-armhf: CPython 3.11" in run.stdout


def test_a_half_unpacked_build_python_is_swept_by_the_next_run(tmp_path: Path) -> None:
    pythons = tmp_path / "pythons"
    half = pythons / ".cpython3.9-bullseye-amd64-0123456789abcdef.k2j4h5g6"  # mkdtemp's name
    done = pythons / "cpython3.9-bullseye-amd64-0123456789abcdef"
    for d in (half, done):
        (d / "usr" / "bin").mkdir(parents=True)
        os.utime(d, (1, 1))
    assert stale.sweep(tmp_path, before=2) == [half]
    assert done.is_dir() and not half.exists()


def test_digest_covers_origin_version_and_debs() -> None:
    host = BuildPython(Path("/usr/bin/python3.11"), "3.11.2", Origin.HOST, "PATH")
    debs = BuildPython(Path("/c/pythons/x/usr/bin/python3.11"), "3.11.2", Origin.DEBIAN, "bookworm amd64 .debs",
                       ("python3.11=3.11.2-6+deb12u8 abc",))
    moved = dataclasses.replace(debs, path=Path("/elsewhere/usr/bin/python3.11"))
    newer = dataclasses.replace(debs, packages=("python3.11=3.11.2-6+deb12u9 def",))
    assert len({host.digest, debs.digest, newer.digest, dataclasses.replace(host, version="3.11.4").digest}) == 4
    assert moved.digest == debs.digest  # the unpacked .debs are what they are, wherever the cache is
    assert buildpython.combined_digest("sysroot", host) != buildpython.combined_digest("sysroot", debs)


# -- integration --------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("target_name", ["bullseye-armhf", "bookworm-armhf"])
def test_suite_cpython_is_unpacked_runs_by_runpath_and_makes_a_build_env(target_name: str, tmp_path: Path,
                                                                         cache_dir: Path) -> None:
    """The suite's amd64 CPython is resolved, downloaded (apt state and .debs shared with the
    normal cache: once per machine), verified and unpacked into a cache that has none."""
    target = TARGETS.get(target_name)
    cache = cache_with_fresh_pythons(cache_dir, tmp_path / "cache")
    bp = buildpython.debian_python(target.debian, target.python, cache, log=lambda m: None)
    assert bp is not None and bp.origin is Origin.DEBIAN
    assert bp.version.startswith(target.python + ".")
    assert bp.path.is_relative_to(cache / "pythons")
    assert any(p.startswith(f"python{target.python}=") for p in bp.packages)
    root = bp.path.parents[2]
    assert not list(root.rglob("libc.so.6")) and not list(root.rglob("ld-linux-x86-64.so.2"))
    for entry in bp.packages:  # a library the host has at this version or newer stays the host's
        name, version = entry.split()[0].split("=", 1)
        host = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", f"{name}:amd64"], capture_output=True, text=True)
        if host.returncode == 0 and host.stdout and not name.startswith(("python", "libpython")):
            assert subprocess.run(["dpkg", "--compare-versions", host.stdout, "lt", version]).returncode == 0, entry
    # No LD_LIBRARY_PATH: the binary and its extension modules find bundled libraries by RUNPATH.
    assert runpath(bp.path).startswith("$ORIGIN/")
    ssl_module = next((root / "usr" / "lib" / f"python{target.python}" / "lib-dynload").glob("_ssl.*.so"))
    assert "$ORIGIN/" in runpath(ssl_module)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "PYTHON"))}
    check = [str(bp.path), "-c", buildpython.CHECK]
    assert subprocess.run(check, env=clean, capture_output=True, text=True).stdout.strip() == bp.version
    # Relocatable: a copy elsewhere (a moved cache) still runs.
    moved = tmp_path / "moved"
    shutil.copytree(root, moved, symlinks=True)
    check[0] = str(moved / bp.path.relative_to(root))
    run = subprocess.run(check, env=clean, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    # Reused, not unpacked again, and described by its manifest.
    again = buildpython.debian_python(target.debian, target.python, cache, log=lambda m: pytest.fail(m))
    assert again == bp and again.digest == bp.digest
    manifest = json.loads((root / ".ot2wheels" / "buildpython.json").read_text())
    assert manifest["packages"] == list(bp.packages)
    # A build env (pip from virtualenv's embedded wheels; Debian splits ensurepip out).
    env_python = buildenv.ensure_build_env(bp.path, (), cache)
    run = subprocess.run([str(env_python), "-c", "import build, pip, sys; print(sys.version_info[:2])"],
                         env=clean, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == str(target.python_tuple), run.stderr


@pytest.mark.integration
def test_toolchain_digest_changes_with_the_build_python(monkeypatch, cache_dir: Path) -> None:
    """Same sysroot, another build Python: another toolchain digest, so builds are not reused."""
    target = TARGETS.get("bookworm-armhf")
    digests = {}
    for source in ("debian", sys.executable):  # the suite's 3.11.x, or the one running this test
        if source == sys.executable and sys.version_info[:2] != (3, 11):
            pytest.skip("the interpreter running the tests is not a 3.11")
        monkeypatch.setenv(ENV, source)
        tc = DebianToolchain(target, Layout(root=REPO, cache=cache_dir, dist=REPO / "dist"))
        tc.ensure(log=lambda m: None)
        digests[source] = (tc.manifest["digest"], tc.digest, tc.build_python_info().origin)
    (sysroot_a, digest_a, origin_a), (sysroot_b, digest_b, origin_b) = digests.values()
    assert sysroot_a == sysroot_b and digest_a != digest_b
    assert (origin_a, origin_b) == (Origin.DEBIAN, Origin.GIVEN)


@pytest.mark.integration
def test_a_python_no_source_offers_names_every_source_in_one_line(no_pyenv, cache_dir: Path) -> None:
    old = dataclasses.replace(TARGETS.get("bookworm-armhf"), name="old", python="3.4")
    with pytest.raises(ToolchainError) as err:
        buildpython.find(old, cache_dir, log=lambda m: None)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert "host: no python3.4 on PATH or in pyenv" in msg
    assert "debian: bookworm/bookworm-updates has no python3.4 for amd64" in msg
    assert "uv: `uv python install 3.4` failed: " in msg


@pytest.mark.integration
def test_uv_managed_python_is_installed_or_fails_in_one_line(tmp_path: Path) -> None:
    """uv's downloads are not reachable everywhere (not from this machine kind): either works."""
    try:
        bp = buildpython.uv_python("3.10", tmp_path, log=lambda m: None)
    except buildpython.Unavailable as exc:
        assert "\n" not in str(exc) and str(exc).startswith("`uv python install 3.10` failed: "), exc
    else:
        assert bp is not None and bp.origin is Origin.UV and bp.version.startswith("3.10.")


@pytest.mark.integration
def test_uv_managed_python_from_a_loopback_mirror_is_installed_found_and_reused(
        monkeypatch, tmp_path: Path, cache_dir: Path) -> None:
    """The uv path as users have it, against a stand-in for uv's download list (uv's own
    downloads are not reachable from here): the archive is bullseye's unpacked CPython 3.9."""
    bullseye = TARGETS.get("bullseye-armhf")
    debs = buildpython.debian_python(bullseye.debian, "3.9", cache_dir, log=lambda m: None)
    assert debs is not None
    srv = tmp_path / "srv"
    srv.mkdir()
    archive = srv / "cpython-3.9-standin.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(debs.path.parents[1], arcname="python")  # <root>/usr -> python/ (install_only layout)
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV, "uv")
    with serve_directory(srv) as url:
        major, minor, patch = (int(p) for p in debs.version.split("."))
        listing = {f"cpython-{debs.version}-linux-x86_64-gnu": {
            "name": "cpython", "arch": {"family": "x86_64", "variant": None}, "os": "linux", "libc": "gnu",
            "major": major, "minor": minor, "patch": patch, "prerelease": "", "variant": None, "build": "1",
            "url": f"{url}/{archive.name}", "sha256": sha(archive)}}
        (srv / "downloads.json").write_text(json.dumps(listing))
        monkeypatch.setenv("UV_PYTHON_DOWNLOADS_JSON_URL", f"{url}/downloads.json")
        said: list[str] = []
        bp = buildpython.find(bullseye, cache, log=said.append)
    assert bp is not None and (bp.origin, bp.version) == (Origin.UV, debs.version)
    assert bp.path.is_relative_to(cache / "pythons" / "uv") and said == [
        f"installing a uv-managed CPython 3.9 into {cache / 'pythons' / 'uv'} ..."]
    again = buildpython.find(bullseye, cache, log=lambda m: pytest.fail(m))  # server gone: found, not fetched
    assert again == bp
    env_python = buildenv.ensure_build_env(bp.path, (), cache)
    run = subprocess.run([str(env_python), "-c", "import build, ssl"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def cache_with_fresh_pythons(shared: Path, dest: Path) -> Path:
    """A cache sharing sysroots, .debs, apt state, sources, ccache and locks with `shared`, but
    with no build Pythons or build environments: those must be acquired again."""
    dest.mkdir()
    for name in ("sysroots", "debs", "apt", "sources", "ccache", "locks"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        (dest / name).symlink_to(shared / name)
    return dest


@pytest.mark.integration
@pytest.mark.slow
def test_main_job_on_both_default_targets_with_pyenv_hidden(tmp_path: Path, cache_dir: Path,
                                                            checkout_copy: Path) -> None:
    """`nox -s demo` (markupsafe: C; greenlet: C++) as on a fresh machine without pyenv."""
    root = checkout_copy
    for name in ("markupsafe", "greenlet"):
        shutil.copytree(REPO / "packages" / name, root / "packages" / name)
    cache = cache_with_fresh_pythons(cache_dir, tmp_path / "cache")
    env = without_pyenv(dict(os.environ), tmp_path / "empty-pyenv")
    env.update({"OT2WHEELS_CACHE": str(cache), "PYTHONPATH": str(REPO / "src")})
    env.pop("OT2WHEELS_LEDGER", None)
    run = subprocess.run([sys.executable, "-m", "nox", "-s", "demo", "--", "--jobs", "1"], cwd=root,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "4 build(s)" in run.stderr and "4 built, 0 reused from the cache, 0 failed" in run.stderr
    assert run.stderr.count("smoke PASSED") == 4
    assert "build environment (CPython 3.9.2 from debian" in run.stderr
    info = subprocess.run([sys.executable, "-m", "invoke", "toolchain.info", "--target", "bullseye-armhf"],
                          cwd=root, capture_output=True, text=True, env=env)
    assert f"build python: {cache}/pythons/cpython3.9-bullseye-amd64-" in info.stdout, info.stdout + info.stderr
    assert "(CPython 3.9.2; debian: bullseye/bullseye-updates amd64 .debs)" in info.stdout
    for target, cp in (("bookworm-armhf", "cp311"), ("bullseye-armhf", "cp39")):
        for name in ("markupsafe", "greenlet"):
            log = next((root / "dist" / target / name).glob(f"{name}-*-{cp}.log")).read_text()
            header = next(line for line in log.splitlines() if line.startswith("# build python: "))
            if target == "bullseye-armhf" or not Path("/usr/bin/python3.11").exists():
                assert f"{cache}/pythons/" in header and "; debian: " in header, header
            else:  # Debian 12's own python3.11, found on PATH
                assert header.startswith("# build python: /usr/bin/python3.11 (CPython 3.11") and "host: PATH" in header
