"""Which sysconfigdata of a sysroot the cross build uses: the one named for the target's arch."""

from __future__ import annotations

from pathlib import Path

import pytest

from ot2wheels.crossenv import find_sysconfigdata, write_sysconfigdata
from ot2wheels.errors import ToolchainError
from ot2wheels.targets import ARCHES


def _sysroot(tmp: Path, *names: str) -> Path:
    lib = tmp / "usr" / "lib" / "python3.11"
    lib.mkdir(parents=True)
    for n in names:
        (lib / f"{n}.py").write_text("build_time_vars = {'INCLUDEPY': '/usr/include/python3.11', 'LIBDIR': '/usr/lib'}\n")
    return tmp


@pytest.mark.parametrize("arch, name", [("arm64", "_sysconfigdata__linux_aarch64-linux-gnu"),
                                        ("armhf", "_sysconfigdata__linux_arm-linux-gnueabihf")])
def test_the_arch_names_the_sysconfigdata(tmp_path: Path, arch: str, name: str) -> None:
    # Debian ships the multiarch-qualified module and a legacy alias without "linux_"
    legacy = name.replace("__linux_", "__")
    root = _sysroot(tmp_path, legacy, name)
    assert find_sysconfigdata(root, "3.11", ARCHES[arch].multiarch).stem == name
    dest = tmp_path / "copy"
    assert write_sysconfigdata(root, "3.11", dest, ARCHES[arch].multiarch) == name
    assert f"'INCLUDEPY': '{root}/usr/include/python3.11'" in (dest / f"{name}.py").read_text()


def test_a_sysroot_of_another_arch_is_refused(tmp_path: Path) -> None:
    root = _sysroot(tmp_path, "_sysconfigdata__linux_arm-linux-gnueabihf")
    with pytest.raises(ToolchainError, match=r"another architecture .*linux_arm-linux-gnueabihf.* needs "
                                             r"_sysconfigdata__linux_aarch64-linux-gnu.py"):
        find_sysconfigdata(root, "3.11", ARCHES["arm64"].multiarch)
