"""The gate's tag and architecture rules, on synthetic wheels (no cross compiler needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_elf import (
    ARM_EABI5_HARD,
    ARM_EABI5_SOFT,
    EM_AARCH64,
    EM_ARM,
    EM_X86_64,
    elf_bytes,
    wheel,
)

from ot2wheels import gate
from ot2wheels.targets import load_targets

REPO = Path(__file__).resolve().parents[1]
TARGETS = load_targets(REPO / "toolchain" / "targets.toml")
ARMHF = elf_bytes(32, EM_ARM, ARM_EABI5_HARD)
AARCH64 = elf_bytes(64, EM_AARCH64)


@pytest.mark.parametrize("tag, target, ok", [
    ("cp36-abi3-linux_armv7l", "bookworm-armhf", True),   # stable ABI of 3.6 loads on 3.11
    ("cp311-abi3-linux_armv7l", "bookworm-armhf", True),
    ("cp39-abi3-manylinux_2_17_armv7l", "bullseye-armhf", True),
    ("cp312-abi3-linux_armv7l", "bookworm-armhf", False),  # needs 3.12's stable ABI
    ("cp310-abi3-linux_armv7l", "bullseye-armhf", False),
    ("cp311-cp311-linux_armv7l", "bookworm-armhf", True),
    ("cp36-cp36m-linux_armv7l", "bookworm-armhf", False),  # version-specific ABI of another CPython
    ("cp311-none-linux_armv7l", "bookworm-armhf", False),
    ("pp310-abi3-linux_armv7l", "bookworm-armhf", False),
    ("cp36-abi3-linux_aarch64", "bookworm-armhf", False),  # platform of another arch
])
def test_abi3_accepted_up_to_the_target_minor(tmp_path, tag, target, ok) -> None:
    elf = AARCH64 if "aarch64" in tag else ARMHF
    report = gate.check(wheel(tmp_path, f"ext-1.0-{tag}.whl", elf), TARGETS.get(target), set())
    assert report.passed is ok, report.reasons
    if not ok:
        minor = TARGETS.get(target).python_tuple[1]
        assert any(f"or cp3X-abi3 with X <= {minor}" in r for r in report.reasons)


def test_aarch64_wheel_is_checked_as_aarch64_elf64(tmp_path) -> None:
    arm64 = TARGETS.get("bookworm-arm64")
    good = gate.check(wheel(tmp_path, "ext-1.0-cp311-cp311-linux_aarch64.whl", AARCH64), arm64, set())
    assert good.passed, good.reasons
    assert "AARCH64 ELF64" in good.reasons[0] and "EABI5" not in good.reasons[0]
    assert gate.check(wheel(tmp_path / "m", "ext-1.0-cp311-cp311-manylinux_2_17_aarch64.whl", AARCH64),
                      arm64, set()).passed
    bad = gate.check(wheel(tmp_path / "a", "ext-1.0-cp311-cp311-linux_aarch64.whl", ARMHF), arm64, set())
    assert not bad.passed
    assert any("ELF class 32, expected 64-bit" in r for r in bad.reasons)
    assert any("machine EM_ARM, expected EM_AARCH64" in r for r in bad.reasons)
    host = gate.check(wheel(tmp_path / "h", "ext-1.0-cp311-cp311-linux_aarch64.whl",
                            elf_bytes(64, EM_X86_64)), arm64, set())
    assert any("machine EM_X86_64, expected EM_AARCH64" in r for r in host.reasons)


def test_armhf_keeps_eabi5_and_hard_float(tmp_path) -> None:
    armhf = TARGETS.get("bookworm-armhf")
    good = gate.check(wheel(tmp_path, "ext-1.0-cp311-cp311-linux_armv7l.whl", ARMHF), armhf, set())
    assert good.passed and "ARM EABI5 hard-float" in good.reasons[0]
    soft = gate.check(wheel(tmp_path / "s", "ext-1.0-cp311-cp311-linux_armv7l.whl",
                            elf_bytes(32, EM_ARM, ARM_EABI5_SOFT)), armhf, set())
    assert any("soft-float ABI" in r for r in soft.reasons)
    old = gate.check(wheel(tmp_path / "o", "ext-1.0-cp311-cp311-linux_armv7l.whl",
                           elf_bytes(32, EM_ARM, 0x04000400)), armhf, set())
    assert any("EABI version 4, expected 5" in r for r in old.reasons)
    wide = gate.check(wheel(tmp_path / "w", "ext-1.0-cp311-cp311-linux_armv7l.whl", AARCH64), armhf, set())
    assert any("expected EM_ARM" in r for r in wide.reasons) and any("expected 32-bit" in r for r in wide.reasons)
