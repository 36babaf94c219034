"""Versioned dependencies: a C++ library built by Debian 12's cross g++ 12 needs GLIBCXX_3.4.29,
which bullseye's libstdc++ (GCC 10, up to 3.4.28) lacks. The gate refuses it for bullseye,
passes it for bookworm, and the cross environment's static libstdc++ makes it fit bullseye."""

import shlex
import subprocess
from pathlib import Path

import pytest
from synthetic_elf import wheel

from ot2wheels import crossenv, crossfiles, elfversions, gate
from ot2wheels.toolchains import get_toolchain

pytestmark = pytest.mark.integration

# g++ >= 11's allocator calls std::__throw_bad_array_new_length (GLIBCXX_3.4.29) for a too-big n.
NEW_ARRAY = ('#include <memory>\n#include <cstddef>\n'
             'extern "C" int *make(std::size_t n) { return std::allocator<int>().allocate(n); }\n')


def _cxx_library(tc, tmp_path: Path, ldflags: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "make.cpp"
    source.write_text(NEW_ARRAY)
    out = tmp_path / "libmake.so"
    cmd = [*shlex.split(tc.compilers()["CXX"]), "-O2", "-fPIC", "-shared", str(source), "-o", str(out),
           *shlex.split(ldflags)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def _toolchain(repo_project, name: str):
    tc = get_toolchain(repo_project.targets.get(name), repo_project.layout)
    tc.ensure()
    return tc


def _check(tc, lib: Path, tmp_path: Path) -> gate.GateReport:
    whl = wheel(tmp_path / "w", f"make-1.0-{tc.target.cp}-{tc.target.cp}-{tc.target.platform}.whl",
                lib.read_bytes())
    return gate.check(whl, tc.target, tc.system_libs(), tc.library_dirs)


def test_glibcxx_newer_than_bullseye_fails_there_and_passes_on_bookworm(repo_project, tmp_path: Path) -> None:
    bullseye = _toolchain(repo_project, "bullseye-armhf")
    lib = _cxx_library(bullseye, tmp_path, "")  # dynamic libstdc++, as before the static rule
    with lib.open("rb") as fh:
        assert "GLIBCXX_3.4.29" in elfversions.needed(fh)["libstdc++.so.6"]
    report = _check(bullseye, lib, tmp_path / "bullseye")
    assert not report.passed
    assert ("pkg/_ext.so needs GLIBCXX_3.4.29; the target's libstdc++.so.6 has up to GLIBCXX_3.4.28"
            in report.reasons), report.reasons
    assert not report.only_needs_vendoring
    # Without the sysroot's libraries only the glibc floor is checked: this would have passed.
    assert gate.check(next((tmp_path / "bullseye" / "w").glob("*.whl")), bullseye.target,
                      bullseye.system_libs()).passed

    bookworm = _toolchain(repo_project, "bookworm-armhf")
    report = _check(bookworm, _cxx_library(bookworm, tmp_path / "bw", ""), tmp_path / "bookworm")
    assert report.passed, report.reasons
    assert not crossenv.needs_static_libstdcxx(bookworm.library_dirs, bookworm.compilers()["CXX"])


def test_bullseye_cross_environment_links_libstdcxx_statically(repo_project, tmp_path: Path) -> None:
    bullseye = _toolchain(repo_project, "bullseye-armhf")
    env = bullseye.env()
    assert "-static-libstdc++" in env["LDFLAGS"].split()
    assert env["LDCXXSHARED"].endswith("-shared -static-libstdc++")
    lib = _cxx_library(bullseye, tmp_path, env["LDFLAGS"])
    with lib.open("rb") as fh:
        assert "libstdc++.so.6" not in elfversions.needed(fh)
    report = _check(bullseye, lib, tmp_path / "bullseye")
    assert report.passed, report.reasons
    assert "libstdc++.so.6" not in report.elves[0].needed


def test_meson_and_cmake_files_carry_the_static_libstdcxx(repo_project, tmp_path: Path) -> None:
    """Meson and CMake builds drop LDFLAGS: their cross files say it instead (bullseye only)."""
    for name, static in (("bullseye-armhf", True), ("bookworm-armhf", False)):
        tc = _toolchain(repo_project, name)
        (tmp_path / name).mkdir()
        pc = tmp_path / name / "pkg-config"
        cross = crossfiles.meson_cross_file(tc, tmp_path / name, pc).read_text()
        cmake = crossfiles.cmake_toolchain_file(tc, tmp_path / name, pc).read_text()
        assert ("'-static-libstdc++'" in cross.split("cpp_link_args = ")[1].splitlines()[0]) is static
        assert ("-static-libstdc++" in cmake) is static
