"""Header -> Debian package, derived from the `Contents-<arch>` index of a target's suites.

`apt-get update` fetches Contents files when the Contents-deb index target is enabled; we do
that in a private apt state of its own (the sysroot's apt state stays untouched), read the
files with apt-helper (which undoes apt's compression), and keep every header under
usr/include of a -dev package, keyed the way C sources include it:
- `libxml2/libxml/parser.h` (relative to usr/include), and
- `libxml/parser.h` (below one directory that a build adds with -I, e.g. usr/include/libxml2),
  only when the include has a directory part or that directory is the multiarch one (`ffi.h`
  in usr/include/arm-linux-gnueabihf), so a bare `config.h` maps to nothing.
Libraries a build links by name, where no header names them (pymssql's `-lkrb5`), are in the
same map under keys no include path has: `-lNAME` for a -dev package's
usr/lib/<multiarch>/libNAME.so (or usr/lib/libNAME.so), `NAME.pc` for its pkg-config module
(usr/lib/<multiarch>/pkgconfig, usr/lib/pkgconfig, usr/share/pkgconfig).
The map is cached as JSON next to the lists, keyed by the Contents files it came from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from . import locks
from .errors import ToolchainError
from .fsutil import atomic_write
from .targets import Target
from .toolchains.debapt import PrivateApt

# The index target apt-file's configuration defines, spelled out: apt itself knows the format but
# declares no Contents target unless apt-file is installed.
_TARGET = "-oAcquire::IndexTargets::deb::Contents-deb::"
CONTENTS_OPTIONS = (
    f"{_TARGET}MetaKey=$(COMPONENT)/Contents-$(ARCHITECTURE)",
    f"{_TARGET}ShortDescription=Contents-$(ARCHITECTURE)",
    f"{_TARGET}Description=$(RELEASE)/$(COMPONENT) $(ARCHITECTURE) Contents (deb)",
    f"{_TARGET}DefaultEnabled=true",
)
APT_HELPER = "/usr/lib/apt/apt-helper"
# Packages every sysroot already has, or whose headers are the compiler's and libc's own.
NOT_TARGET_LIBS = ("libc6-dev", "linux-libc-dev", "libcrypt-dev", "libstdc++", "libgcc", "gcc-", "g++-",
                   "libpython", "python3", "libclang", "libc++", "libnewlib", "musl", "dietlibc", "klibc")


class ContentsApt(PrivateApt):
    """The target's suites, with Contents files fetched by `update`."""

    def options(self) -> list[str]:
        return [*super().options(), *CONTENTS_OPTIONS]


def contents_files(lists: Path) -> list[Path]:
    return sorted(p for p in lists.glob("*_Contents-*") if p.is_file() and "partial" not in p.parts)


def _preferred(packages: set[str]) -> str:
    """One package for a header several ship: a plain -dev package, then the shortest name."""
    return min(packages, key=lambda p: (not p.endswith("-dev"), len(p), p))


# Bumped when parse_contents maps more: a cached map of an older format is made again.
_MAP_FORMAT = 2


def _library_key(path: str, multiarch: str) -> str | None:
    """`-lNAME` for a development symlink libNAME.so, `NAME.pc` for a pkg-config module, else None."""
    folder, _, name = path.rpartition("/")
    if folder in (f"usr/lib/{multiarch}", "usr/lib") and name.startswith("lib") and name.endswith(".so"):
        return "-l" + name[3:-3]
    if folder in (f"usr/lib/{multiarch}/pkgconfig", "usr/lib/pkgconfig", "usr/share/pkgconfig") \
            and name.endswith(".pc"):
        return name
    return None


def parse_contents(lines, multiarch: str) -> dict[str, str]:
    """Contents lines (bytes) -> {include path, `-lNAME` or `NAME.pc`: package}."""
    found: dict[str, set[str]] = {}
    for raw in lines:
        header = raw.startswith(b"usr/include/")
        if not header and not raw.startswith((b"usr/lib/", b"usr/share/pkgconfig/")):
            continue
        try:
            path, where = raw.decode().rstrip("\n").rsplit(None, 1)
        except (UnicodeDecodeError, ValueError):
            continue
        pkgs = {w.rsplit("/", 1)[-1] for w in where.split(",")}
        pkgs = {p for p in pkgs if p.endswith("-dev") and not p.startswith(NOT_TARGET_LIBS)}
        if not pkgs:
            continue
        if not header:
            if (key := _library_key(path, multiarch)) is not None:
                found.setdefault(key, set()).update(pkgs)
            continue
        rel = path[len("usr/include/"):]
        found.setdefault(rel, set()).update(pkgs)
        first, _, below = rel.partition("/")
        if below and ("/" in below or first == multiarch):
            found.setdefault(below, set()).update(pkgs)
    return {h: _preferred(p) for h, p in found.items()}


def header_map(target: Target, cache: Path, refresh: bool = False, say=print) -> dict[str, str]:
    """{include path, `-lNAME` or `NAME.pc`: Debian package} for `target`'s suites (downloads
    Contents once, cached)."""
    if target.debian is None:
        raise ToolchainError(f"target {target.name} has no Debian suites to read a Contents index from")
    state = cache / "apt-contents" / target.name
    apt = ContentsApt(state, target.debian, target.architecture.debian)
    with locks.cache_lock(cache, f"apt-contents-{target.name}"):
        apt.prepare()
        stamp = state / "lists" / ".updated"
        if refresh or not stamp.exists() or not contents_files(state / "lists"):
            say(f"{target.name}: fetching the suites' Contents index (once; tens of MB)")
            apt.update(force=True)
        files = contents_files(state / "lists")
        if not files:
            raise ToolchainError(f"apt fetched no Contents index into {state / 'lists'}; "
                                 "this apt may not know the Contents-deb index target")
        key = hashlib.sha256(json.dumps([_MAP_FORMAT, *((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                                                        for f in files)]).encode()).hexdigest()
        cached = state / "headers.json"
        if cached.is_file():
            data = json.loads(cached.read_text())
            if data.get("key") == key:
                return data["headers"]
        if not Path(APT_HELPER).exists() and not shutil.which("apt-helper"):
            raise ToolchainError(f"{APT_HELPER} not found (it comes with apt)")
        headers: dict[str, str] = {}
        for f in files:
            proc = subprocess.Popen([APT_HELPER, "cat-file", str(f)], stdout=subprocess.PIPE)
            assert proc.stdout is not None
            for h, p in parse_contents(proc.stdout, target.architecture.multiarch).items():
                headers.setdefault(h, p)  # the first suite (the release) wins over its updates
            if proc.wait() != 0:
                raise ToolchainError(f"apt-helper cat-file {f} failed (exit {proc.returncode})")
        atomic_write(cached, json.dumps({"key": key, "headers": headers}, sort_keys=True))
        return headers
