from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from ot2wheels.build import build_one
from ot2wheels.errors import BuildError, ToolchainError
from ot2wheels.paths import Layout, default_cache_dir
from ot2wheels.recipes import load_recipe
from ot2wheels.rust import cargo_home, explain_cargo_failure, find_cargo_manifest, preflight, rust_triple
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
    path = dest / "pyo3_demo-0.1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for rel, data in sorted(files.items()):
            info = tarfile.TarInfo(f"pyo3_demo-0.1.0/{rel}")
            info.size, info.mtime = len(data), 315532800
            tf.addfile(info, io.BytesIO(data))
    return path


def demo_layout(tmp_path: Path, backend: str, cargo_toml: str | None = None) -> Layout:
    root = tmp_path / "root"
    (root / "toolchain").mkdir(parents=True)
    shutil.copy(ROOT / "toolchain" / "targets.toml", root / "toolchain")
    sdist = demo_sdist(tmp_path, backend, cargo_toml)
    requires = '["maturin==1.16.0"]' if backend == "maturin" else '["setuptools==80.9.0", "setuptools-rust==1.13.0"]'
    recipe = root / "packages" / "pyo3-demo" / "recipe.toml"
    recipe.parent.mkdir(parents=True)
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
target-libs = ["libstd-rust-web-dev"]

[smoke]
imports = ["pyo3_demo"]
code = """{SMOKE}"""
''')
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
