"""Target-side build dependencies: recipe/target fields, ABI floors, the host-headers trap."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import serve_directory, sha
from ot2wheels import targetdeps
from ot2wheels.errors import ConfigError
from ot2wheels.paths import Layout
from ot2wheels.pipeline import Project
from ot2wheels.recipes import load_recipe, parse_recipe
from ot2wheels.smoke import smoke_test
from ot2wheels.targets import load_targets
from ot2wheels.toolchains import get_toolchain

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tests" / "data" / "native_demos" / "numpy_ext"

BASE = {
    "package": {"name": "thing", "version": "1.0"},
    "source": {"sha256": "0" * 64},
    "smoke": {"imports": ["thing"]},
}


def _parse(build: dict) -> object:
    return parse_recipe({**BASE, "build": build}, Path("/x/thing/recipe.toml"))


def test_target_requires_is_validated_on_load() -> None:
    assert _parse({"target-requires": ["numpy>=1.21.6"]}).target_requires == ("numpy>=1.21.6",)
    with pytest.raises(ConfigError, match=r"recipe.toml: \[build\] target-requires: 'numpy' needs a version range"):
        _parse({"target-requires": ["numpy"]})
    with pytest.raises(ConfigError, match="may only name a project and a version range"):
        _parse({"target-requires": ["numpy>=1.21; python_version<'3.10'"]})
    with pytest.raises(ConfigError, match="is not a valid requirement"):
        _parse({"target-requires": ["numpy>>1"]})
    with pytest.raises(ConfigError, match=r"config-settings: 'oops' must look like 'KEY=VALUE'"):
        _parse({"config-settings": ["oops"]})
    with pytest.raises(ConfigError, match="unknown field"):
        _parse({"target-require": ["numpy==1.26.4"]})


def test_device_packages_cap_the_target_dependency(tmp_path: Path) -> None:
    targets = load_targets(ROOT / "toolchain" / "targets.toml")
    ot2, bookworm = targets.get("ot2"), targets.get("bookworm-armhf")
    assert ot2.device_packages == {"numpy": "1.21.6", "pandas": "1.0.5"}
    req = Requirement("numpy>=1.21")
    assert not targetdeps.effective_spec(req, ot2).contains("1.26.4")  # newer than the robot's
    assert targetdeps.effective_spec(req, ot2).contains("1.21.6")
    assert targetdeps.effective_spec(req, bookworm).contains("1.26.4")
    bad = (ROOT / "toolchain" / "targets.toml").read_text().replace('numpy = "1.21.6"', 'numpy = "new"')
    (tmp_path / "targets.toml").write_text(bad)
    with pytest.raises(ConfigError, match=r"targets.ot2.device.numpy: 'new' is not a version"):
        load_targets(tmp_path / "targets.toml")


def test_the_shipped_pandas_recipe_builds_against_target_numpy() -> None:
    pandas = load_recipe(ROOT / "packages" / "pandas")
    assert pandas.target_requires == ("numpy>=1.21.6",)
    assert not any(r.startswith("numpy") for r in pandas.requires)  # host numpy comes from targetdeps
    deps = targetdeps.TargetDeps((targetdeps.TargetDep("numpy", "1.26.4", "recipe", "ab" * 32),))
    assert deps.host_requires == ("numpy==1.26.4",)
    other = targetdeps.TargetDeps((targetdeps.TargetDep("numpy", "1.26.4", "recipe", "cd" * 32),))
    assert deps.digest != other.digest  # a rebuilt numpy (new sha256) changes pandas' cache key
    assert targetdeps.TargetDeps().digest == ""


def test_build_log_check_names_host_numpy_headers() -> None:
    roots = ["/c/work/pandas.x/target/site/numpy"]
    good = "arm-linux-gnueabihf-gcc -I/c/work/pandas.x/target/site/numpy/numpy/core/include -c a.c\n"
    host = "arm-linux-gnueabihf-gcc -I/venv/lib/python3.11/site-packages/numpy/core/include -c b.c\n"
    assert targetdeps.check_build_log(good, roots) == []
    assert targetdeps.check_build_log(good + host, roots) == ["/venv/lib/python3.11/site-packages/numpy/core/include"]
    assert targetdeps.check_build_log("-I /other/numpy/_core/include x", roots) == ["/other/numpy/_core/include"]


def _wheel(path: Path, requires: list[str]) -> Path:
    meta = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n" + "".join(f"Requires-Dist: {r}\n" for r in requires) \
        + "\nLong description.\n"
    files = {"demo/__init__.py": b"", "demo-1.0.dist-info/METADATA": meta.encode(),
             "demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_armv7l\n"}
    rows = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
            for n, d in files.items()]
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
        zf.writestr("demo-1.0.dist-info/RECORD", "\n".join([*rows, "demo-1.0.dist-info/RECORD,,"]) + "\n")
    return path


def test_runtime_requirement_is_pinned_to_the_version_built_against(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "demo-1.0-cp311-cp311-linux_armv7l.whl",
                   ["numpy>=1.20.3; python_version < '3.10'", "numpy>=1.21.0; python_version >= '3.10'",
                    "python-dateutil>=2.8.1"])
    pinned = targetdeps.pin_requirements(wheel, {"numpy": "1.26.4"}, tmp_path / "out")
    assert targetdeps.requires_dist(pinned) == ["python-dateutil>=2.8.1", "numpy>=1.26.4"]
    with zipfile.ZipFile(pinned) as zf:  # RECORD still matches every file
        for row in zf.read("demo-1.0.dist-info/RECORD").decode().splitlines():
            name, digest, _size = row.split(",")
            if digest:
                got = base64.urlsafe_b64encode(hashlib.sha256(zf.read(name)).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={got}", name
        assert "Long description." in zf.read("demo-1.0.dist-info/METADATA").decode()


@pytest.mark.integration
def test_a_missing_target_dependency_fails_with_one_line(tmp_path: Path, cache_dir: Path) -> None:
    """No recipe, no wheel on the index, not in the sysroot: one line naming it (real pip, real sysroot)."""
    layout = Layout(root=tmp_path, cache=cache_dir, dist=tmp_path / "dist")
    (tmp_path / "packages").mkdir()
    recipe = _parse({"target-requires": ["ot2wheels-no-such-project==9.9"]})
    target = load_targets(ROOT / "toolchain" / "targets.toml").get("bookworm-armhf")
    with pytest.raises(targetdeps.BuildError) as err:
        targetdeps.resolve(recipe, target, layout, build_one=None, say=lambda s: None)  # type: ignore[arg-type]
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("target dependency ot2wheels-no-such-project==9.9 for bookworm-armhf not found: "
                              "no recipe packages/ot2wheels-no-such-project")
