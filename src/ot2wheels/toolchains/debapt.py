"""The private apt machinery of the Debian toolchain: apt-get/apt-cache with their own state,
sources and architecture (the host's apt configuration is read for the mirror, never changed),
the .debs they resolve, and what is done to a tree unpacked from them.

apt does the downloading and verifies every .deb against the suite's signed Release file.
Used for a target's sysroot (its architecture) and for its build Python (amd64).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import aptsource
from ..download import sha256_file
from ..errors import ToolchainError
from ..fsutil import atomic_write
from ..targets import DebianSource

# Refresh the private package lists when older than this; a pinned toolchain is the manifest.
LISTS_MAX_AGE_S = 24 * 3600


@dataclass(frozen=True)
class Deb:
    package: str
    version: str
    filename: str
    size: int
    sha256: str
    extra: bool  # asked for by a recipe (target-libs), not part of the base target


def run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        output = result.stderr or result.stdout
        # the first line is all a build's console shows: put the reason there
        errors = [line for line in output.splitlines() if line.startswith("E: ")]
        why = f"disk full at {cwd or 'the cache'}: " if "No space left on device" in output else ""
        raise ToolchainError(f"{why}{what} failed (exit {result.returncode})"
                             + (f": {errors[-1]}" if errors else "") + f"\n$ {' '.join(argv[:3])} ...\n"
                             + output[-3000:])
    return result.stdout


class PrivateApt:
    """apt-get/apt-cache with their own state dir, sources and (Debian) architecture."""

    def __init__(self, state: Path, source: DebianSource, arch: str) -> None:
        self.state = state
        self.source = source
        self.arch = arch

    def options(self) -> list[str]:
        s = self.state
        return [
            f"-oDir::State={s}", f"-oDir::State::Lists={s}/lists",
            f"-oDir::State::status={s}/status", f"-oDir::Etc::SourceList={s}/sources.list",
            f"-oDir::Etc::SourceParts={s}/sources.list.d", f"-oDir::Etc::Preferences={s}/preferences",
            f"-oDir::Etc::PreferencesParts={s}/preferences.d", f"-oDir::Cache={s}/cache",
            f"-oDir::Cache::Archives={s}/archives", f"-oAPT::Architecture={self.arch}",
            f"-oAPT::Architectures::={self.arch}", "-oDebug::NoLocking=1",
            "-oAPT::Sandbox::User=root", "-oAcquire::Retries=3",
        ]

    def prepare(self) -> None:
        s = self.state
        for d in ("lists/partial", "archives/partial", "cache", "sources.list.d", "preferences.d"):
            (s / d).mkdir(parents=True, exist_ok=True)
        (s / "status").touch()
        mirror = self.source.mirror or aptsource.debian_mirror(suite=self.source.suites[0].split("-")[0])
        lines = [
            f"deb [arch={self.arch} signed-by={self.source.keyring}] {mirror} {suite} main"
            for suite in self.source.suites
        ]
        sources = s / "sources.list"
        text = "\n".join(lines) + "\n"
        if not sources.exists() or sources.read_text() != text:
            atomic_write(sources, text)
            (s / "lists" / ".updated").unlink(missing_ok=True)

    def update(self, force: bool = False) -> None:
        stamp = self.state / "lists" / ".updated"
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE_S:
            return
        if not Path(self.source.keyring).is_file():
            raise ToolchainError(f"keyring {self.source.keyring} not found; "
                                 "install it with: apt-get install debian-archive-keyring")
        run(["apt-get", *self.options(), "update"], f"apt-get update (private {self.arch} state)")
        stamp.touch()

    def closure(self, packages: list[str], exclude: tuple[str, ...]) -> list[str]:
        """Every real package `packages` depend on (Depends/Pre-Depends), minus `exclude` globs."""
        out = run(
            ["apt-cache", *self.options(), "depends", "--recurse", "--no-recommends",
             "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
             *packages],
            f"resolving {' '.join(packages)}",
        )
        names = {line.strip() for line in out.splitlines() if line and not line[0].isspace()}
        names = {n for n in names if not n.startswith("<")}  # virtual packages
        return sorted(n for n in names if not any(fnmatch.fnmatch(n, pat) for pat in exclude))

    def uris(self, packages: list[str]) -> list[tuple[str, str, int, str]]:
        """(url, filename, size, sha256) per package, from the signed indexes, without downloading."""
        out = run(["apt-get", *self.options(), "download", "--print-uris", *packages],
                   "apt-get download --print-uris")
        rows = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0].startswith("'"):
                digest = parts[3].split(":", 1)
                if digest[0].upper() != "SHA256":
                    raise ToolchainError(f"apt gave no SHA256 for {parts[1]}: {line}")
                rows.append((parts[0].strip("'"), parts[1], int(parts[2]), digest[1]))
        return rows

    def download(self, packages: list[str], dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        before = set(dest.iterdir())
        try:
            # apt-get download writes into its working directory (never os.chdir: builds run in threads)
            run(["apt-get", *self.options(), "download", *packages], "apt-get download", cwd=dest)
        except ToolchainError:
            for p in set(dest.iterdir()) - before:  # apt writes under the final name: no half .deb stays
                p.unlink(missing_ok=True)
            raise


def debs_for(apt: PrivateApt, wanted: set[str], base: set[str]) -> list[Deb]:
    """The .debs (version, size, sha256 from the signed indexes) of `wanted`, by package name."""
    debs = []
    for _url, filename, size, sha in apt.uris(sorted(wanted)):
        package, version = filename.split("_")[0], filename.split("_")[1]
        version = version.replace("%3a", ":")
        debs.append(Deb(package, version, filename, size, sha, extra=package not in base))
    missing = wanted - {d.package for d in debs}
    if missing:
        raise ToolchainError(f"apt has no download for: {', '.join(sorted(missing))}")
    return sorted(debs, key=lambda d: d.package)


def deb_ok(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def relativize_symlinks(root: Path) -> None:
    """Absolute links (libz.so -> /lib/...) would point into the host: make them relative."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                dest = os.readlink(p)
                if dest.startswith("/"):
                    p.unlink()
                    p.symlink_to(os.path.relpath(root / dest.lstrip("/"), p.parent))


def precompile_stdlib(root: Path, python: str, host_python: Path) -> None:
    """Byte-compile the target stdlib once (same X.Y, same bytecode): qemu startup is ~3x faster."""
    libdir = root / "usr" / "lib" / f"python{python}"
    subprocess.run(
        [str(host_python), "-m", "compileall", "-q", "-j0", "-x", r"(test|lib2to3|idlelib)/", str(libdir)],
        capture_output=True,
    )
