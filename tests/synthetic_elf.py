"""Minimal ELF shared objects and wheels holding them, written byte by byte.

Enough for the wheel gate's checks (class, machine, flags, an empty .dynamic, no symbol
versions) without a cross compiler, so tag and architecture rules are unit-tested; real
cross-built wheels go through the same gate in the integration tests.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

EM_X86_64, EM_ARM, EM_AARCH64 = 62, 40, 183
ARM_EABI5_HARD = 0x05000400  # EF_ARM_EABI_VER5 | EF_ARM_ABI_FLOAT_HARD
ARM_EABI5_SOFT = 0x05000200  # EF_ARM_EABI_VER5 | EF_ARM_ABI_FLOAT_SOFT


def elf_bytes(bits: int, machine: int, flags: int = 0) -> bytes:
    """An ET_DYN ELF (little endian) with sections: null, .dynamic (DT_NULL only), .shstrtab."""
    wide = bits == 64
    ehsize, shentsize = (64, 64) if wide else (52, 40)
    dynamic = bytes(16 if wide else 8)  # one DT_NULL entry
    shstrtab = b"\0.dynamic\0.shstrtab\0"
    dyn_off = ehsize
    str_off = dyn_off + len(dynamic)
    sh_off = str_off + len(shstrtab)
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1, 1, 0]) + bytes(8)
    head = struct.pack("<HHIQQQIHHHHHH" if wide else "<HHIIIIIHHHHHH",
                       3, machine, 1, 0, 0, sh_off, flags, ehsize, 0, 0, shentsize, 3, 2)

    def section(name: int, kind: int, offset: int, size: int, link: int, entsize: int) -> bytes:
        if wide:
            return struct.pack("<IIQQQQIIQQ", name, kind, 0, 0, offset, size, link, 0, 1, entsize)
        return struct.pack("<IIIIIIIIII", name, kind, 0, 0, offset, size, link, 0, 1, entsize)

    sections = (section(0, 0, 0, 0, 0, 0)
                + section(1, 6, dyn_off, len(dynamic), 2, len(dynamic))  # SHT_DYNAMIC, strings in 2
                + section(10, 3, str_off, len(shstrtab), 0, 0))  # SHT_STRTAB
    return ident + head + dynamic + shstrtab + sections


def wheel(directory: Path, filename: str, elf: bytes | None) -> Path:
    """A wheel named `filename` holding `pkg/_ext.so` (if `elf`) and the usual metadata."""
    name, version = filename.split("-")[:2]
    path = directory / filename
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        if elf is not None:
            zf.writestr("pkg/_ext.so", elf)
        zf.writestr(f"{name}-{version}.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n")
    return path
