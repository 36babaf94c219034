"""Target-side build dependencies: recipe/target fields, ABI floors, the host-headers trap."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import URL_RECIPE_HEAD, serve_directory, sha
from packaging.requirements import Requirement

import ot2wheels
from ot2wheels import build, targetdeps
from ot2wheels.build import cache_key
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


def test_plan_notes_what_the_device_already_has() -> None:
    ot2 = load_targets(ROOT / "toolchain" / "targets.toml").get("ot2")
    notes = targetdeps.device_notes([("numpy", "1.26.4"), ("pandas", "1.0.5"), ("pyyaml", "6.0.3")], ot2)
    assert notes == [
        "numpy 1.26.4: the device has 1.21.6 in its system site-packages; extensions built against numpy "
        "for ot2 use 1.21.6 or older (target-requires cap)",
        "pandas 1.0.5: the device already has it (ot2 device facts)",
    ]


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
    # Meson's compiler lines name folders relative to its build directory
    meson = "gcc -I../../../target/site/numpy/numpy/_core/include -c a.c\n"
    assert targetdeps.check_build_log(meson, roots) == []
    host_rel = "gcc -I../../venv/lib/python3.11/site-packages/numpy/_core/include -c a.c\n"
    assert targetdeps.check_build_log(host_rel, roots) == ["../../venv/lib/python3.11/site-packages/numpy/_core/include"]
    assert targetdeps.check_build_log("gcc -I../target/site/numpyx/numpy/_core/include x\n", roots) != []
    assert targetdeps.check_build_log("gcc -I/c/work/pandas.xy/target/site/numpy/numpy/_core/include x\n", roots) != []


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
    pinned = targetdeps.pin_requirements(wheel, {"numpy": targetdeps.runtime_range("numpy", "1.26.4")},
                                         tmp_path / "out")
    assert targetdeps.requires_dist(pinned) == ["python-dateutil>=2.8.1", "numpy>=1.26.4,<2"]
    with zipfile.ZipFile(pinned) as zf:  # RECORD still matches every file
        for row in zf.read("demo-1.0.dist-info/RECORD").decode().splitlines():
            name, digest, _size = row.split(",")
            if digest:
                got = base64.urlsafe_b64encode(hashlib.sha256(zf.read(name)).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={got}", name
        assert "Long description." in zf.read("demo-1.0.dist-info/METADATA").decode()


def test_a_numpy_1_build_cannot_run_on_numpy_2() -> None:
    """numpy 2 broke the C ABI: built against 1.x runs on >= it below 2; built against 2.x on >= it."""
    assert targetdeps.runtime_range("numpy", "1.26.4") == ">=1.26.4,<2"
    assert targetdeps.runtime_range("NumPy", "1.21.6") == ">=1.21.6,<2"
    assert targetdeps.runtime_range("numpy", "2.3.5") == ">=2.3.5"
    assert targetdeps.runtime_range("scipy", "1.11.4") == ">=1.11.4"


@pytest.mark.integration
def test_numpy_config_answers_the_target_prefix(tmp_path: Path, cache_dir: Path) -> None:
    """Meson's dependency('numpy') (shapely) asks numpy-config: the build venv's copy, given to
    the cross file, must print the TARGET prefix's include folder, not the host numpy's."""
    from ot2wheels import buildenv
    from ot2wheels.crossfiles import meson_cross_file

    target = load_targets(ROOT / "toolchain" / "targets.toml").get("bookworm-armhf")
    toolchain = get_toolchain(target, Layout(root=ROOT, cache=cache_dir, dist=tmp_path / "dist"))
    python = buildenv.ensure_build_env(toolchain.build_python(), ("numpy==2.2.6",), cache_dir)
    site = tmp_path / "target" / "site" / "numpy"
    (site / "numpy" / "_core" / "include" / "numpy").mkdir(parents=True)
    (site / "numpy" / "_core" / "include" / "numpy" / "_numpyconfig.h").write_text("#define NPY_SIZEOF_LONG 4\n")
    deps = targetdeps.TargetDeps((targetdeps.TargetDep("numpy", "2.2.6", "wheel", "0" * 64, site=site),))
    tools = targetdeps.config_tools(deps, python)
    assert [name for name, _ in tools] == ["numpy-config"]
    assert targetdeps.config_tools(targetdeps.TargetDeps(), python) == ()
    (tmp_path / "cross").mkdir()
    cross = meson_cross_file(toolchain, tmp_path / "cross", Path("/usr/bin/pkg-config"), binaries=tools)
    assert f"numpy-config = '{tools[0][1]}'" in cross.read_text()
    log = tmp_path / "build.log"
    log.write_text("")
    env = targetdeps.prepare(deps, toolchain, python, {}, tmp_path / "work", log)
    run = subprocess.run([str(tools[0][1]), "--cflags"], capture_output=True, text=True,
                         env={**os.environ, **env})
    assert run.stdout.strip() == f"-I{site / 'numpy' / '_core' / 'include'}", run.stderr


@pytest.mark.integration
@pytest.mark.parametrize("longdouble,has_256", [(8, False), (16, True)])
def test_host_numpy_answers_the_targets_long_double_aliases(longdouble: int, has_256: bool, tmp_path: Path,
                                                             cache_dir: Path) -> None:
    """h5py asks the numpy that runs its setup `hasattr(numpy, 'complex256')`: the x86-64 host's says
    yes, armhf's long double is a double (`'h5py_size_n256' undeclared`). Through the hook, the
    build venv's real numpy answers from the target prefix's _numpyconfig.h; aarch64 keeps them."""
    from ot2wheels import buildenv

    target = load_targets(ROOT / "toolchain" / "targets.toml").get("bookworm-armhf")
    toolchain = get_toolchain(target, Layout(root=ROOT, cache=cache_dir, dist=tmp_path / "dist"))
    python = buildenv.ensure_build_env(toolchain.build_python(), ("numpy==2.2.6",), cache_dir)
    site = tmp_path / "target" / "site" / "numpy"
    (site / "numpy" / "_core" / "include" / "numpy").mkdir(parents=True)
    (site / "numpy" / "_core" / "include" / "numpy" / "_numpyconfig.h").write_text(
        f"#define NPY_SIZEOF_LONG 4\n#define NPY_SIZEOF_LONGDOUBLE {longdouble}\n")
    deps = targetdeps.TargetDeps((targetdeps.TargetDep("numpy", "2.2.6", "wheel", "0" * 64, site=site),))
    log = tmp_path / "build.log"
    log.write_text("")
    env = targetdeps.prepare(deps, toolchain, python, {}, tmp_path / "work", log)
    probe = ("import numpy; from numpy import *; print(hasattr(numpy, 'complex256'), hasattr(numpy, 'float128'), "
             "'complex256' in numpy.__all__, numpy.dtype(numpy.longdouble).itemsize, float64(2) * 2)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    host = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=clean)
    assert host.stdout.split() == ["True", "True", "True", "16", "4.0"], host.stderr  # the x86-64 host's own
    run = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env={**clean, **env})
    assert run.stdout.split() == [str(has_256)] * 3 + ["16", "4.0"], run.stderr


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


# -- the trap, end to end: a numpy C extension built against the target numpy, and one that
#    takes the host's numpy headers (slow: builds numpy for bookworm-armhf first, ~5 min) ------------

NPDEMO_RECIPE = URL_RECIPE_HEAD + """
[build]
requires = ["setuptools==75.3.0"]
target-requires = ["numpy==1.26.4"]
targets = ["bookworm-armhf"]

[smoke]
imports = ["npdemo", "npdemo._npdemo"]
code = '''
import numpy as np, npdemo
sizes = npdemo.compiled_sizes()
assert sizes["NPY_SIZEOF_LONG"] == sizes["sizeof_long"] == 4, sizes
assert sizes["NPY_SIZEOF_INTP"] == sizes["sizeof_npy_intp"] == 4, sizes
assert npdemo.total(np.arange(5.0)) == 10.0
print(sizes)
'''
"""


@pytest.fixture(scope="module")
def numpy_project(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with the real numpy recipe; its dist/ is shared by the tests of this module."""
    root = tmp_path_factory.mktemp("npproj")
    (root / "toolchain").mkdir()
    shutil.copy(ROOT / "toolchain" / "targets.toml", root / "toolchain" / "targets.toml")
    shutil.copytree(ROOT / "packages" / "numpy", root / "packages" / "numpy")
    return root


def _build_npdemo(root: Path, cache_dir: Path, tmp_path: Path, trap: bool):
    from conftest import sdist_from_dir

    from ot2wheels.build import build_one

    serve = tmp_path / "serve"
    serve.mkdir()
    rename = {"setup.py": "setup_good.py", "setup_trap.py": "setup.py"} if trap else {}
    sdist = sdist_from_dir(DEMO, serve, "npdemo", "0.1.0", rename)
    layout = Layout(root=root, cache=cache_dir, dist=root / "dist")
    with serve_directory(serve) as url:
        d = root / "packages" / "npdemo"
        d.mkdir(parents=True, exist_ok=True)
        (d / "recipe.toml").write_text(NPDEMO_RECIPE.format(name="npdemo", version="0.1.0", url=f"{url}/{sdist.name}", sha256=sha(sdist)))
        project = Project.load(layout)
        result = build_one(project.recipe("npdemo"), project.targets.get("bookworm-armhf"), layout,
                           say=lambda s: None, force=True)
    return project, result


@pytest.mark.integration
@pytest.mark.slow
def test_numpy_extension_compiles_against_the_target_numpy(numpy_project: Path, cache_dir: Path,
                                                           tmp_path: Path) -> None:
    project, result = _build_npdemo(numpy_project, cache_dir, tmp_path, trap=False)
    assert result.ok, result.record.error
    numpy_wheel = next((numpy_project / "dist" / "bookworm-armhf" / "numpy").glob("numpy-1.26.4-*.whl"))
    log = result.record_path.with_suffix(".log").read_text()
    prefix = next(ln.split(": ", 1)[1] for ln in log.splitlines() if ln.startswith("#   target prefix: "))
    assert f"# numpy include folder for the build: {prefix}/numpy/core/include" in log
    assert f"-I{prefix}/numpy/core/include" in log  # the compile line used the target copy
    assert targetdeps.requires_dist(result.wheel) == ["numpy>=1.26.4,<2"]  # built against 1.x: not numpy 2
    toolchain = get_toolchain(project.targets.get("bookworm-armhf"), project.layout)
    toolchain.ensure()
    # the cache key covers the numpy wheel's sha256: a rebuilt numpy means a rebuilt npdemo
    deps = targetdeps.TargetDeps((targetdeps.TargetDep("numpy", "1.26.4", "recipe",
                                                       targetdeps.sha256_file(numpy_wheel)),))
    assert result.record.cache_key == cache_key(project.recipe("npdemo"), project.targets.get("bookworm-armhf"),
                                                toolchain, deps.digest)
    smoke = smoke_test(project.recipe("npdemo"), result.wheel, toolchain)
    assert smoke.passed, smoke.output
    # and the host's own numpy headers, which the build venv also holds, are refused by the size check
    venv_python = next(ln.split()[1] for ln in log.splitlines() if ln.startswith("$ ") and "-m build" in ln)
    host = subprocess.run([venv_python, "-c", "import numpy; print(numpy.get_include())"], capture_output=True,
                          text=True, env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    with pytest.raises(targetdeps.BuildError, match="NPY_SIZEOF_LONG is 8, the target's SIZEOF_LONG is 4"):
        targetdeps.check_numpy_headers(Path(host.stdout.strip()), toolchain)


@pytest.mark.integration
@pytest.mark.slow
def test_an_extension_built_against_host_numpy_headers_is_refused(numpy_project: Path, cache_dir: Path,
                                                                  tmp_path: Path) -> None:
    _project, result = _build_npdemo(numpy_project, cache_dir, tmp_path, trap=True)
    assert not result.ok and result.wheel is None
    assert "compiled against numpy headers outside the target prefix" in result.record.error, result.record.error
    assert "/site-packages/numpy/core/include" in result.record.error


@pytest.mark.integration
def test_a_published_target_dependency_is_the_oldest_fitting_release(repo_project: Project) -> None:
    """Built against N runs with >= N: from published wheels the oldest release in the spec that
    has a wheel for the target is taken (the real index: numpy's first cp311 aarch64 wheel), not
    the newest (numpy 2.x, which pandas 1.5 predates)."""
    from packaging.specifiers import SpecifierSet

    arm64 = repo_project.targets.get("bookworm-arm64")
    oldest = targetdeps._oldest_wheel_version("numpy", SpecifierSet(">=1.21.6"), arm64, repo_project.layout)
    assert oldest == "1.23.2", oldest  # 1.21.6 and 1.22.x have no cp311 wheels
    armhf = repo_project.targets.get("bookworm-armhf")  # numpy publishes no armv7l wheels: our recipe
    assert targetdeps._oldest_wheel_version("numpy", SpecifierSet(">=1.21.6"), armhf, repo_project.layout) is None


def test_the_cache_key_covers_the_builder_code(tmp_path: Path) -> None:
    """A wheel built before a change to the host guard (or any module that shapes the build) is
    not reused: the builder digest, part of every cache key, changes with that code."""
    src = tmp_path / "src"
    shutil.copytree(Path(ot2wheels.__file__).parent, src / "ot2wheels")
    probe = ["-c", "from ot2wheels.build import builder_digest; print(builder_digest())"]

    def digest() -> str:
        out = subprocess.run([sys.executable, *probe], env={"PYTHONPATH": str(src)}, capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()

    assert digest() == build.builder_digest()
    (src / "ot2wheels" / "report.py").write_text("# not builder code\n", encoding="utf-8")
    assert digest() == build.builder_digest()
    guard = src / "ot2wheels" / "hostguard.py"
    guard.write_text(guard.read_text() + "\n# changed\n")
    assert digest() != build.builder_digest()
