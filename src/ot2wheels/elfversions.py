"""ELF symbol versions: what a file needs of each library (.gnu.version_r) and what a
library defines (.gnu.version_d). The dynamic linker refuses to load a file that needs a
version its library does not define (`version 'GLIBCXX_3.4.29' not found`), so the gate
compares the two, and the cross environment uses the definitions to see whether the target's
libstdc++ is older than the cross compiler's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
from packaging.version import InvalidVersion, Version

_NAMED_VERSION = re.compile(r"(?P<family>.+?)_(?P<number>\d+(?:\.\d+)*)")


def _elf(fh: BinaryIO) -> ELFFile | None:
    try:
        return ELFFile(fh)
    except ELFError:
        return None


def needed(fh: BinaryIO) -> dict[str, set[str]]:
    """Library file name -> the version names this ELF needs of it (empty for a non-ELF)."""
    elf = _elf(fh)
    out: dict[str, set[str]] = {}
    for section in elf.iter_sections() if elf else ():
        if isinstance(section, GNUVerNeedSection):
            for verneed, auxes in section.iter_versions():
                if verneed.name:  # a nameless entry names no library to check against
                    out.setdefault(verneed.name, set()).update(a.name for a in auxes)
    return out


def defined(path: Path) -> frozenset[str]:
    """The version names library `path` defines (its own soname included); empty if none."""
    with path.open("rb") as fh:
        elf = _elf(fh)
        names: set[str] = set()
        for section in elf.iter_sections() if elf else ():
            if isinstance(section, GNUVerDefSection):
                # A verdef's first aux is its own name; the rest name its parents.
                names.update(next(auxes).name for _verdef, auxes in section.iter_versions())
        return frozenset(names)


def split(name: str) -> tuple[str, Version] | None:
    """`GLIBCXX_3.4.28` -> ("GLIBCXX", 3.4.28); None for names without a number (`CXXABI_TM_1`
    gives ("CXXABI_TM", 1))."""
    m = _NAMED_VERSION.fullmatch(name)
    if not m:
        return None
    try:
        return m.group("family"), Version(m.group("number"))
    except InvalidVersion:
        return None


def highest(names: frozenset[str] | set[str], family: str) -> str | None:
    """The highest version name of `family` (e.g. "GLIBCXX") among `names`, or None."""
    found = [(s[1], n) for n in names if (s := split(n)) and s[0] == family]
    return max(found)[1] if found else None
