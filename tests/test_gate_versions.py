"""Versioned dependencies: a C++ library built by Debian 12's cross g++ 12 with its own headers
needs GLIBCXX_3.4.29, which bullseye's libstdc++ (GCC 10, up to 3.4.28) lacks. The gate refuses
it for bullseye and passes it for bookworm; the bullseye toolchain's CXX (bullseye's own
libstdc++ 10 headers, `libstdcxx = "10"` in targets.toml) does not produce it."""

import shlex
import subprocess
import zipfile
from pathlib import Path

import pytest
from synthetic_elf import wheel

from ot2wheels import elfversions, gate
from ot2wheels.toolchains import get_toolchain

pytestmark = pytest.mark.integration

# g++ >= 11's allocator calls std::__throw_bad_array_new_length (GLIBCXX_3.4.29) for a too-big n.
NEW_ARRAY = ('#include <memory>\n#include <cstddef>\n'
             'extern "C" int *make(std::size_t n) { return std::allocator<int>().allocate(n); }\n')


def _raw_gxx(tc) -> list[str]:
    """The cross g++ with its own (GCC 12) headers: what C++ for bullseye was compiled with before."""
    return [f"{tc.target.triplet}-g++", f"--sysroot={tc.sysroot}"]


def _cxx_library(tc, tmp_path: Path, cxx: list[str] | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "make.cpp"
    source.write_text(NEW_ARRAY)
    out = tmp_path / "libmake.so"
    cmd = [*(cxx or shlex.split(tc.compilers()["CXX"])), "-O2", "-fPIC", "-shared", str(source), "-o", str(out)]
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
    lib = _cxx_library(bullseye, tmp_path, _raw_gxx(bullseye))
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
    report = _check(bookworm, _cxx_library(bookworm, tmp_path / "bw"), tmp_path / "bookworm")
    assert report.passed, report.reasons



def test_a_vendored_library_answers_for_its_own_versions(repo_project, tmp_path: Path) -> None:
    """The wheel's own copy provides the versions (as after auditwheel repair), not the target's."""
    bullseye = _toolchain(repo_project, "bullseye-armhf")
    lib = _cxx_library(bullseye, tmp_path, _raw_gxx(bullseye))
    own = subprocess.run([*_raw_gxx(bullseye), "-print-file-name=libstdc++.so.6"],
                         check=True, capture_output=True, text=True).stdout.strip()
    whl = wheel(tmp_path / "w", f"make-1.0-{bullseye.target.cp}-{bullseye.target.cp}-{bullseye.target.platform}.whl", lib.read_bytes())
    with zipfile.ZipFile(whl, "a") as zf:
        zf.write(Path(own).resolve(), "pkg.libs/libstdc++.so.6")
    report = gate.check(whl, bullseye.target, bullseye.system_libs(), bullseye.library_dirs)
    assert not any("GLIBCXX" in r for r in report.reasons), report.reasons


def test_bullseye_cxx_uses_bullseye_libstdcxx_headers_and_passes_the_gate(repo_project, tmp_path: Path) -> None:
    bullseye = _toolchain(repo_project, "bullseye-armhf")
    cxx = shlex.split(bullseye.compilers()["CXX"])
    assert "-nostdinc++" in cxx and f"-isystem{bullseye.sysroot}/usr/include/c++/10" in cxx, cxx
    lib = _cxx_library(bullseye, tmp_path)
    with lib.open("rb") as fh:
        versions = elfversions.needed(fh)["libstdc++.so.6"]
    assert versions and "GLIBCXX_3.4.29" not in versions, versions
    report = _check(bullseye, lib, tmp_path / "bullseye")
    assert report.passed, report.reasons
    # bookworm's own libstdc++ is the cross g++'s: nothing to change there
    assert "-nostdinc++" not in _toolchain(repo_project, "bookworm-armhf").compilers()["CXX"]
