"""The wheel gate on real wheels: cross-built ones pass, wrong ones fail with reasons."""

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import build_tiny, make_tiny_sdist

from ot2wheels import gate
from ot2wheels.sources import extract
from ot2wheels.toolchains import get_toolchain

pytestmark = pytest.mark.integration

# getrandom() exists since glibc 2.25; arc4random() only since 2.36 (bookworm).
NEW_GLIBC = dict(extra_includes="#include <stdlib.h>", body="a += (long)(arc4random() & 0);")



@pytest.fixture
def bookworm_tiny(layout, tmp_path: Path):
    result = build_tiny(layout, tmp_path, **NEW_GLIBC)
    assert result.ok, result.record.error
    return result, get_toolchain(result.target, layout)


def test_cross_built_wheel_passes(bookworm_tiny) -> None:
    result, tc = bookworm_tiny
    report = gate.check(result.wheel, tc.target, tc.system_libs())
    assert report.passed, report.reasons
    assert report.elves[0].max_glibc == "2.36" and "libc.so.6" in report.elves[0].needed


def test_glibc_newer_than_the_floor_fails(bookworm_tiny) -> None:
    result, tc = bookworm_tiny
    old = dataclasses.replace(tc.target, glibc=(2, 31))
    report = gate.check(result.wheel, old, tc.system_libs())
    assert not report.passed
    assert any("needs GLIBC_2.36" in r and "glibc 2.31" in r for r in report.reasons)
    assert not report.only_needs_vendoring


def test_wrong_python_tag_fails(bookworm_tiny, repo_project) -> None:
    result, tc = bookworm_tiny
    bullseye = repo_project.targets.get("bullseye-armhf")
    report = gate.check(result.wheel, bullseye, tc.system_libs())
    assert not report.passed and any("expected cp39-cp39-linux_armv7l" in r for r in report.reasons)


def test_missing_library_fails(bookworm_tiny) -> None:
    result, tc = bookworm_tiny
    report = gate.check(result.wheel, tc.target, system_libs=set())
    assert not report.passed and any("needs libc.so.6" in r for r in report.reasons)
    assert report.only_needs_vendoring  # what auditwheel repair is run for


def test_host_x86_64_build_renamed_as_arm_fails(tmp_path: Path, repo_project) -> None:
    """A native x86-64 extension with an ARM tag is caught by the ELF check."""
    tree = extract(make_tiny_sdist(tmp_path), tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "w"), str(tree)], check=True, capture_output=True)
    native = next((tmp_path / "w").glob("*.whl"))
    fake = native.with_name("tiny-1.0-cp311-cp311-linux_armv7l.whl")
    shutil.copy(native, fake)
    bookworm = repo_project.targets.get("bookworm-armhf")
    report = gate.check(fake, bookworm, {"libc.so.6"})
    assert not report.passed
    assert any("expected EM_ARM" in r for r in report.reasons)
    assert any("expected 32-bit" in r for r in report.reasons)


def test_pure_wheel_from_a_native_recipe_fails(tmp_path: Path, repo_project) -> None:
    src = tmp_path / "p"
    (src / "p").mkdir(parents=True)
    (src / "p" / "__init__.py").write_text("")
    (src / "pyproject.toml").write_text('[project]\nname="p"\nversion="1"\n[build-system]\n'
                                        'requires=["setuptools"]\nbuild-backend="setuptools.build_meta"\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "w"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "w").glob("*.whl"))
    report = gate.check(wheel, repo_project.targets.get("bookworm-armhf"), set())
    assert not report.passed
    assert any("pure wheel" in r and "did not compile" in r for r in report.reasons)
    assert any("no ELF files" in r for r in report.reasons)
