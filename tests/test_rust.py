from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
from conftest import serve_directory, write_sdist

from ot2wheels.build import build_one
from ot2wheels.errors import BuildError, ToolchainError
from ot2wheels.paths import Layout, default_cache_dir
from ot2wheels.recipes import load_recipe
from ot2wheels.rust import (
    CrateSource,
    cargo_home,
    crates_index,
    explain_cargo_failure,
    find_cargo_manifest,
    find_lock,
    find_rustup,
    lock_changes,
    preflight,
    prepare_crates,
    registry_home,
    rust_triple,
)
from ot2wheels.smoke import smoke_test
from ot2wheels.targets import load_targets
from ot2wheels.toolchains import get_toolchain

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tests" / "data" / "pyo3_demo"
REGISTRY = "/usr/share/cargo/registry"

NO_PACKAGE = f"""error: no matching package named `nonexistent_crate_xyz` found
location searched: directory source `{REGISTRY}` (which is replacing registry `crates-io`)
required by package `cf v0.1.0 (/tmp/cf)`
As a reminder, you're using offline mode (--offline) which can sometimes cause surprising resolution failures
"""
NO_VERSION = f"""error: failed to select a version for the requirement `pyo3 = "^0.22"`
candidate versions found which didn't match: 0.17.3
location searched: directory source `{REGISTRY}` (which is replacing registry `crates-io`)
required by package `cf v0.1.0 (/tmp/cf)`
"""
LOCKED = f"""error: failed to select a version for the requirement `libc = "^0.2"` (locked to 0.2.170)
candidate versions found which didn't match: 0.2.139
location searched: directory source `{REGISTRY}` (which is replacing registry `crates-io`)
required by package `cf v0.1.0 (/tmp/cf)`
"""


def test_rust_triples() -> None:
    bookworm = load_targets(ROOT / "toolchain" / "targets.toml").get("bookworm-armhf")
    assert rust_triple(bookworm) == "armv7-unknown-linux-gnueabihf"
    assert rust_triple(load_targets(ROOT / "toolchain" / "targets.toml").get("ot2")) == "armv7-unknown-linux-gnueabihf"


def test_cargo_errors_become_one_line() -> None:
    assert explain_cargo_failure(NO_PACKAGE) == (
        f"crate nonexistent_crate_xyz is not available offline: no version of it in {REGISTRY} "
        "(required by cf v0.1.0 (/tmp/cf))")
    assert explain_cargo_failure(NO_VERSION).startswith(
        "crate pyo3 is not available offline: needs ^0.22, the offline registry has 0.17.3")
    assert "Cargo.lock pins 0.2.170" in explain_cargo_failure(LOCKED)
    assert explain_cargo_failure("error: could not compile `foo`") is None


def test_cargo_home_points_at_the_offline_registry(tmp_path: Path) -> None:
    home = cargo_home(tmp_path, Path("/srv/crates"))
    text = (home / "config.toml").read_text()
    assert 'replace-with = "offline"' in text and 'directory = "/srv/crates"' in text and "offline = true" in text
    assert cargo_home(tmp_path, Path("/srv/crates")) == home


def test_find_cargo_manifest(tmp_path: Path) -> None:
    (tmp_path / "rust").mkdir()
    (tmp_path / "rust" / "Cargo.toml").write_text("")
    assert find_cargo_manifest(tmp_path) == tmp_path / "rust" / "Cargo.toml"
    (tmp_path / "pyproject.toml").write_text('[tool.maturin]\nmanifest-path = "rust/Cargo.toml"\n')
    (tmp_path / "Cargo.toml").write_text("")
    assert find_cargo_manifest(tmp_path) == tmp_path / "rust" / "Cargo.toml"


@pytest.mark.integration
def test_preflight_names_the_missing_crate(tmp_path: Path) -> None:
    """Real cargo against Debian's crate registry: one line, not a wall of cargo output."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lib.rs").write_text("")
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "cf"\nversion = "0.1.0"\nedition = "2021"\n'
                                         '[dependencies]\nnonexistent_crate_xyz = "1"\n')
    env = {"CARGO_HOME": str(cargo_home(tmp_path / "cache")), "CARGO": "/usr/bin/cargo", "RUSTC": "/usr/bin/rustc"}
    with pytest.raises(BuildError) as err:
        preflight(tmp_path, env)
    assert str(err.value).startswith("crate nonexistent_crate_xyz is not available offline:")
    assert "\n" not in str(err.value)


# -- the PyO3 demo, built by the ordinary build step and smoke-tested under qemu ----------------

SMOKE = """
import pyo3_demo as d
assert d.add(2, 3) == 5
assert d.arch() == "arm", d.arch()
assert d.reverse_words("robot runs flows") == "flows runs robot"
"""


def demo_sdist(dest: Path, backend: str, cargo_toml: str | None = None) -> Path:
    """pyo3_demo-0.1.0.tar.gz from tests/data/pyo3_demo, for the maturin or setuptools-rust backend."""
    files = {"Cargo.toml": (cargo_toml or (DEMO / "Cargo.toml").read_text()).encode(),
             "src/lib.rs": (DEMO / "src" / "lib.rs").read_bytes()}
    if backend == "maturin":
        files["pyproject.toml"] = (DEMO / "pyproject.toml").read_bytes()
    else:
        files["pyproject.toml"] = (DEMO / "setuptools_rust" / "pyproject.toml").read_bytes()
        files["setup.py"] = (DEMO / "setuptools_rust" / "setup.py").read_bytes()
    return write_sdist(dest, "pyo3_demo", "0.1.0", files)


def demo_recipe(dest: Path, sdist: Path, backend: str, target_libs: tuple[str, ...] = ("libstd-rust-web-dev",)) -> Path:
    """packages/pyo3-demo/recipe.toml under `dest` for `sdist` (a vendor SDK needs no target-libs)."""
    requires = '["maturin==1.16.0"]' if backend == "maturin" else '["setuptools==80.9.0", "setuptools-rust==1.13.0"]'
    recipe = dest / "packages" / "pyo3-demo" / "recipe.toml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(f'''[package]
name = "pyo3-demo"
version = "0.1.0"

[source]
kind = "url"
url = "{sdist.as_uri()}"
sha256 = "{hashlib.sha256(sdist.read_bytes()).hexdigest()}"

[build]
backend = "{backend}"
requires = {requires}
target-libs = {json.dumps(list(target_libs))}

[smoke]
imports = ["pyo3_demo"]
code = """{SMOKE}"""
''')
    return recipe.parent


def demo_layout(tmp_path: Path, backend: str, cargo_toml: str | None = None) -> Layout:
    root = tmp_path / "root"
    (root / "toolchain").mkdir(parents=True)
    shutil.copy(ROOT / "toolchain" / "targets.toml", root / "toolchain")
    demo_recipe(root, demo_sdist(tmp_path, backend, cargo_toml), backend)
    # the shared cache: the sysroot and build environments are reused across runs
    return Layout.discover(root, cache=default_cache_dir(), dist=tmp_path / "dist")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["maturin", "setuptools-rust"])
def test_pyo3_demo_cross_builds_and_imports_under_qemu(tmp_path: Path, backend: str) -> None:
    layout = demo_layout(tmp_path, backend)
    recipe = load_recipe(layout.packages / "pyo3-demo")
    target = load_targets(layout.targets_file).get("bookworm-armhf")
    result = build_one(recipe, target, layout, force=True, say=lambda s: None)
    assert result.ok, (result.record.error or "") + (result.record_path.with_suffix(".log").read_text()[-3000:])
    assert result.wheel is not None and result.wheel.name.startswith("pyo3_demo-0.1.0-cp311-cp311-")
    assert result.wheel.name.endswith("armv7l.whl")
    toolchain = get_toolchain(target, layout, recipe.target_libs)
    toolchain.ensure()
    smoke = smoke_test(recipe, result.wheel, toolchain)
    assert smoke.passed, smoke.output


@pytest.mark.integration
@pytest.mark.slow
def test_pyo3_demo_on_bullseye_stays_under_its_glibc_floor(tmp_path: Path) -> None:
    """bullseye ships Rust 1.78, the host rustc is 1.85: the host release's armhf std is used,
    the cdylib is linked against bullseye's glibc 2.31, and the gate's floor check passes."""
    layout = demo_layout(tmp_path, "maturin")
    recipe = load_recipe(layout.packages / "pyo3-demo")
    target = load_targets(layout.targets_file).get("bullseye-armhf")
    result = build_one(recipe, target, layout, force=True, say=lambda s: None, make_jobs=1)
    log = result.record_path.with_suffix(".log").read_text()
    assert result.ok, (result.record.error or "") + log[-3000:]
    assert result.wheel is not None and result.wheel.name.startswith("pyo3_demo-0.1.0-cp39-cp39-")
    assert "(bullseye-armhf's own std is 1.78" in log or "rustup toolchain" in log
    floor = [e.max_glibc for e in result.record.gate.elves]
    assert floor and all(tuple(map(int, v.split("."))) <= (2, 31) for v in floor), floor
    toolchain = get_toolchain(target, layout, recipe.target_libs)
    toolchain.ensure()
    smoke = smoke_test(recipe, result.wheel, toolchain)
    assert smoke.passed, smoke.output


@pytest.mark.integration
def test_build_with_unavailable_crate_fails_with_one_line(tmp_path: Path) -> None:
    cargo = (DEMO / "Cargo.toml").read_text().replace('version = "0.17"', 'version = "0.22"')
    layout = demo_layout(tmp_path, "maturin", cargo_toml=cargo)
    recipe = load_recipe(layout.packages / "pyo3-demo")
    target = load_targets(layout.targets_file).get("bookworm-armhf")
    result = build_one(recipe, target, layout, force=True, say=lambda s: None)
    assert not result.ok
    assert result.record.error.startswith("crate pyo3 is not available offline: needs ^0.22")
    assert "0.17.3" in result.record.error and "\n" not in result.record.error


def test_rust_env_needs_the_std_in_the_sysroot(tmp_path: Path) -> None:
    from ot2wheels.rust import rust_env

    class Bare:  # the smallest Toolchain-shaped object: a sysroot without Rust's std
        target = load_targets(ROOT / "toolchain" / "targets.toml").get("bookworm-armhf")
        sysroot = tmp_path

    with pytest.raises(ToolchainError, match="add 'libstd-rust-web-dev' to the recipe's"):
        rust_env(Bare(), tmp_path)  # type: ignore[arg-type]


# -- crate sources: registry (loopback sparse stand-in) -> vendored cache -> offline fallback ----

STANDIN_CRATES = ("scopeguard-1.1.0", "autocfg-1.1.0")  # no dependencies: index entries stay simple


def _index_path(name: str) -> str:
    """Where a sparse index keeps a crate's file (cargo's layout by name length)."""
    if len(name) <= 2:
        return f"{len(name)}/{name}"
    if len(name) == 3:
        return f"3/{name[0]}/{name}"
    return f"{name[:2]}/{name[2:4]}/{name}"


def sparse_registry(dest: Path, crates: tuple[str, ...]) -> None:
    """A static sparse registry (config.json, index files, .crate files) from Debian's crate sources.

    Each .crate is the crate's source folder tarred as cargo packages it; `dl` in config.json is
    relative to the served root, completed by the test with the server's URL.
    """
    for crate in crates:
        src = Path(REGISTRY) / crate
        meta = tomllib.loads((src / "Cargo.toml").read_text())
        name, version = meta["package"]["name"], meta["package"]["version"]
        assert not meta.get("dependencies") and not meta.get("build-dependencies"), crate
        archive = dest / "crates" / f"{name}-{version}.crate"
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tf:
            for f in sorted(p for p in src.rglob("*") if p.is_file() and p.name != ".cargo-checksum.json"):
                tf.add(f, arcname=f"{name}-{version}/{f.relative_to(src)}", recursive=False)
        entry = {"name": name, "vers": version, "deps": [], "features": meta.get("features", {}),
                 "cksum": hashlib.sha256(archive.read_bytes()).hexdigest(), "yanked": False}
        index = dest / _index_path(name)
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text(json.dumps(entry) + "\n")


def tiny_crate(dest: Path) -> Path:
    (dest / "src").mkdir(parents=True)
    (dest / "src" / "lib.rs").write_text("pub fn run() -> u32 { let mut n = 1; { scopeguard::defer! { n += 1; } } n }\n")
    (dest / "Cargo.toml").write_text('[package]\nname = "tiny"\nversion = "0.1.0"\nedition = "2021"\n'
                                     '[dependencies]\nscopeguard = "1"\nautocfg = "1"\n')
    return dest


def test_lock_changes_and_index_choice(tmp_path: Path) -> None:
    old = ('[[package]]\nname = "a"\nversion = "1.0.0"\nsource = "registry+x"\n'
           '[[package]]\nname = "b"\nversion = "2.0.0"\nsource = "registry+x"\n'
           '[[package]]\nname = "me"\nversion = "0.1.0"\n')
    new = '[[package]]\nname = "a"\nversion = "1.1.0"\nsource = "registry+x"\n'
    assert lock_changes(old, new) == "a 1.0.0 -> 1.1.0, b 2.0.0 -> (dropped)"
    assert lock_changes(old, old) == "no version changes"
    assert crates_index({"OT2WHEELS_CRATES_INDEX": "off"}) is None
    assert crates_index({"OT2WHEELS_CRATES_INDEX": "http://127.0.0.1:9/"}) == "sparse+http://127.0.0.1:9/"
    assert crates_index({}) == "sparse+https://index.crates.io/"
    (tmp_path / "ws" / "member").mkdir(parents=True)
    (tmp_path / "ws" / "Cargo.lock").write_text("")
    assert find_lock(tmp_path / "ws" / "member" / "Cargo.toml", tmp_path) == tmp_path / "ws" / "Cargo.lock"
    assert find_lock(tmp_path / "Cargo.toml", tmp_path) is None


@pytest.mark.integration
def test_crates_from_a_sparse_registry_are_vendored_then_offline(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Real cargo against a loopback sparse registry: vendored under the lock's hash, rebuilt offline."""
    if not all((Path(REGISTRY) / c).is_dir() for c in STANDIN_CRATES):
        pytest.skip(f"Debian crate sources {STANDIN_CRATES} not installed (librust-scopeguard-dev, librust-autocfg-dev)")
    served = tmp_path / "served"
    sparse_registry(served, STANDIN_CRATES)
    cache = tmp_path / "cache"
    debian = {"CARGO": "/usr/bin/cargo", "RUSTC": "/usr/bin/rustc", "CARGO_HOME": str(cargo_home(cache))}
    project = tiny_crate(tmp_path / "tiny")
    log = tmp_path / "build.log"
    with serve_directory(served) as url:
        (served / "config.json").write_text(f'{{"dl": "{url}/crates/{{crate}}-{{version}}.crate"}}')
        monkeypatch.setenv("OT2WHEELS_CRATES_INDEX", f"sparse+{url}/")
        # the sdist's lock, as upstream made it against the registry
        lockgen = subprocess.run(["/usr/bin/cargo", "generate-lockfile"], cwd=project, capture_output=True, text=True,
                                 env={**os.environ, "CARGO_HOME": str(registry_home(tmp_path / "upstream", f"sparse+{url}/"))})
        assert lockgen.returncode == 0, lockgen.stderr
        crates = prepare_crates(project, debian, cache, log)
    assert crates.source is CrateSource.REGISTRY
    vendored = cache / "cargo-vendor" / hashlib.sha256((project / "Cargo.lock").read_bytes()).hexdigest()
    assert (vendored / "scopeguard-1.1.0" / "src" / "lib.rs").is_file()
    assert f"# crates: {CrateSource.REGISTRY.value}: sparse+{url}/" in log.read_text()
    # the registry is gone now: the rebuild uses the vendored copy, offline, and compiles
    crates = prepare_crates(project, debian, cache, log)
    assert crates.source is CrateSource.VENDORED and crates.env["CARGO_HOME"] != debian["CARGO_HOME"]
    build = subprocess.run(["/usr/bin/cargo", "build", "--offline", "--locked"], cwd=project, capture_output=True,
                           text=True, env={**os.environ, **debian, **crates.env, "CARGO_TARGET_DIR": str(tmp_path / "t")})
    assert build.returncode == 0, build.stderr
    assert "Compiling scopeguard v1.1.0" in build.stderr


@pytest.mark.integration
def test_offline_fallback_regenerates_a_lock_it_cannot_satisfy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No registry: Debian's crate sources; a lock pinning versions Debian lacks is re-resolved, and logged."""
    if not all((Path(REGISTRY) / c).is_dir() for c in STANDIN_CRATES):
        pytest.skip(f"Debian crate sources {STANDIN_CRATES} not installed")
    monkeypatch.setenv("OT2WHEELS_CRATES_INDEX", "off")
    project = tiny_crate(tmp_path / "tiny")
    (project / "Cargo.lock").write_text(
        'version = 3\n\n[[package]]\nname = "autocfg"\nversion = "1.4.0"\n'
        'source = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "' + "0" * 64 + '"\n\n'
        '[[package]]\nname = "scopeguard"\nversion = "1.2.0"\n'
        'source = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "' + "1" * 64 + '"\n\n'
        '[[package]]\nname = "tiny"\nversion = "0.1.0"\ndependencies = [\n "autocfg",\n "scopeguard",\n]\n')
    log = tmp_path / "build.log"
    env = {"CARGO": "/usr/bin/cargo", "RUSTC": "/usr/bin/rustc", "CARGO_HOME": str(cargo_home(tmp_path / "cache"))}
    crates = prepare_crates(project, env, tmp_path / "cache", log)
    assert crates.source is CrateSource.OFFLINE and crates.env == {}
    text = log.read_text()
    assert f"# crates: offline directory source: {REGISTRY} (OT2WHEELS_CRATES_INDEX=off)" in text
    assert "Cargo.lock regenerated against it: autocfg 1.4.0 -> 1.1.0, scopeguard 1.2.0 -> 1.1.0" in text
    assert (project / "Cargo.lock.sdist").is_file()


@pytest.mark.integration
@pytest.mark.slow
def test_cryptography_builds_from_debian_crates_and_runs_fernet_x509_sha256_under_qemu(tmp_path: Path) -> None:
    """packages/cryptography on bookworm-armhf: Rust (PyO3) + OpenSSL (cffi), smoke-tested under qemu.

    ~8 min on 2 cores (cargo compiles pyo3, asn1, chrono...); cffi is built first: it is a
    runtime dependency with no armv7l wheel on the index.
    """
    if not (Path(REGISTRY) / "asn1-0.12.2").is_dir():
        pytest.skip("Debian's crate sources for cryptography are not installed (./bootstrap: librust-asn1-dev ...)")
    layout = Layout.discover(ROOT, cache=default_cache_dir(), dist=tmp_path / "dist")
    target = load_targets(layout.targets_file).get("bookworm-armhf")
    cffi = build_one(load_recipe(ROOT / "packages" / "cffi"), target, layout, say=lambda s: None, make_jobs=1)
    assert cffi.ok, cffi.record.error
    recipe = load_recipe(ROOT / "packages" / "cryptography")
    result = build_one(recipe, target, layout, force=True, say=lambda s: None, make_jobs=1)
    log = result.record_path.with_suffix(".log").read_text()
    assert result.ok, (result.record.error or "") + log[-3000:]
    assert result.wheel is not None and result.wheel.name == "cryptography-38.0.4-cp311-cp311-linux_armv7l.whl"
    # which crates were used is on record; offline here, so the lock was re-resolved against Debian's
    assert "# crates: " in log and ("pem 1.1.0 -> 1.0.2" in log or "crate registry" in log or "vendored" in log)
    assert "libssl.so.3" in str(result.record.gate)
    toolchain = get_toolchain(target, layout, recipe.target_libs)
    toolchain.ensure()
    smoke = smoke_test(recipe, result.wheel, toolchain)
    assert smoke.passed, smoke.output


@pytest.mark.integration
def test_rustup_is_used_only_with_the_targets_std_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's real rustup: its host triple has a std, a target it lacks does not count."""
    rustup = shutil.which("rustup") or str(Path.home() / ".cargo" / "bin" / "rustup")
    if not Path(rustup).is_file():
        pytest.skip("no rustup on this machine")
    installed = subprocess.run([rustup, "target", "list", "--installed"], capture_output=True, text=True).stdout.split()
    assert installed, "rustup lists no installed target"
    tools = find_rustup(installed[0])
    assert tools is not None and tools.rustup and tools.rustc.is_file() and tools.cargo.is_file()
    assert tools.describe().startswith(f"rustup toolchain {tools.rustup} (rustc {tools.release}")
    missing = next(t for t in ("armv7-unknown-linux-gnueabihf", "aarch64-unknown-linux-gnu", "riscv64gc-unknown-linux-gnu")
                   if t not in installed)
    assert find_rustup(missing) is None
    monkeypatch.setenv("OT2WHEELS_RUSTUP", "0")
    assert find_rustup(installed[0]) is None
