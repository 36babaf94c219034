"""Debian toolchain: Debian's cross gcc + a sysroot unpacked from the suite's .debs (armhf, arm64).

apt does the downloading and verifies every .deb against the suite's signed Release file;
we run it with a private state directory so the host's own apt configuration is untouched.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import aptsource, crossenv, hostpython, hosttools, locks
from ..download import sha256_file
from ..errors import ToolchainError
from ..fsutil import atomic_write
from ..paths import Layout
from ..targets import DebianSource, Target
from .base import Toolchain

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


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
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
        _run(["apt-get", *self.options(), "update"], f"apt-get update (private {self.arch} state)")
        stamp.touch()

    def closure(self, packages: list[str], exclude: tuple[str, ...]) -> list[str]:
        """Every real package `packages` depend on (Depends/Pre-Depends), minus `exclude` globs."""
        out = _run(
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
        out = _run(["apt-get", *self.options(), "download", "--print-uris", *packages],
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
            _run(["apt-get", *self.options(), "download", *packages], "apt-get download", cwd=dest)
        except ToolchainError:
            for p in set(dest.iterdir()) - before:  # apt writes under the final name: no half .deb stays
                p.unlink(missing_ok=True)
            raise


class DebianToolchain(Toolchain):
    def __init__(self, target: Target, layout: Layout, extra_packages: tuple[str, ...] = ()) -> None:
        if target.debian is None:
            raise ToolchainError(f"target {target.name} has no [debian] table")
        self.target = target
        self.cache = cache = layout.cache
        self.extra_packages = tuple(sorted(set(extra_packages)))
        self.apt = PrivateApt(cache / "apt" / target.name, target.debian, target.architecture.debian)
        self._sysroot: Path | None = None
        self._manifest: dict | None = None

    # -- the interface --------------------------------------------------------------------
    @property
    def sysroot(self) -> Path:
        if self._sysroot is None:
            self.ensure()
        assert self._sysroot is not None
        return self._sysroot

    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            self._manifest = json.loads((self.sysroot / ".ot2wheels" / "manifest.json").read_text())
        return self._manifest

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    def package_version(self, name: str) -> str | None:
        """The Debian version of `name` in the sysroot (None when it is not there)."""
        for pkg in self.manifest["packages"]:
            if pkg.get("package") == name:
                return str(pkg["version"])
        return None

    def build_python(self) -> Path:
        return hostpython.find_python(self.target.python)

    def compilers(self) -> dict[str, str]:
        t, s = self.target.triplet, self.sysroot
        return {
            "CC": f"{t}-gcc --sysroot={s}",
            "CXX": f"{t}-g++ --sysroot={s}",
            "AR": f"{t}-ar",
            "RANLIB": f"{t}-ranlib",
            "STRIP": f"{t}-strip",
            "READELF": f"{t}-readelf",
        }

    def system_libs(self) -> set[str]:
        """Shared libraries the target itself has (not those only a recipe's target-libs add)."""
        return {so for pkg in self.manifest["packages"] if not pkg["extra"] for so in pkg["sonames"]}

    # -- setup ----------------------------------------------------------------------------
    def plan(self) -> list[Deb]:
        """The exact .debs (versions, hashes) the sysroot is made of, from the signed indexes."""
        hosttools.ensure(hosttools.cross_tools(self.target.triplet, self.target.architecture.qemu))
        self.apt.prepare()
        self.apt.update()
        src = self.target.debian
        assert src is not None
        # The plan is a function of the package lists and the request: memoize it on both, so
        # a reused build does not pay for dependency resolution (seconds) every time.
        stamp = self.apt.state / "lists" / ".updated"
        memo_key = hashlib.sha256(json.dumps([
            (self.apt.state / "sources.list").read_text(),
            stamp.stat().st_mtime_ns if stamp.exists() else 0,
            list(src.packages), list(src.exclude), list(self.extra_packages),
        ]).encode()).hexdigest()
        memo = self.apt.state / "plans" / f"{memo_key}.json"
        if memo.is_file():
            return [Deb(**d) for d in json.loads(memo.read_text())]
        debs = self._resolve(src)
        atomic_write(memo, json.dumps([d.__dict__ for d in debs]))
        return debs

    def _resolve(self, src: DebianSource) -> list[Deb]:
        base = set(self.apt.closure(list(src.packages), src.exclude))
        wanted = set(base)
        if self.extra_packages:
            wanted |= set(self.apt.closure([*src.packages, *self.extra_packages], src.exclude))
        rows = self.apt.uris(sorted(wanted))
        debs = []
        for _url, filename, size, sha in rows:
            package, version = filename.split("_")[0], filename.split("_")[1]
            version = version.replace("%3a", ":")
            debs.append(Deb(package, version, filename, size, sha, extra=package not in base))
        missing = wanted - {d.package for d in debs}
        if missing:
            raise ToolchainError(f"apt has no download for: {', '.join(sorted(missing))}")
        return sorted(debs, key=lambda d: d.package)

    def ensure(self, refresh: bool = False, log=print) -> None:
        if self._sysroot is not None and not refresh:
            return
        # The private apt state (lists, status, .deb downloads) is one per target: one user at a time.
        with locks.cache_lock(self.cache, f"apt-{self.target.name}", log):
            if refresh:
                self.apt.prepare()
                self.apt.update(force=True)
            debs = self.plan()
        key = hashlib.sha256(
            json.dumps([self.target.name, self.target.python, [(d.package, d.version, d.sha256) for d in debs]]).encode()
        ).hexdigest()
        root = self.cache / "sysroots" / f"{self.target.name}-{key[:16]}"
        # One assembler per sysroot (target + package set); the others wait and then reuse it.
        with locks.cache_lock(self.cache, f"sysroot-{root.name}", log):
            if not (root / ".ot2wheels" / "manifest.json").is_file():
                self._assemble(debs, root, key, log)
            elif crossenv.sysconfigdata_moved(root, root / ".ot2wheels" / "sysconfig"):
                crossenv.write_sysconfigdata(root, self.target.python, root / ".ot2wheels" / "sysconfig",
                                             self.target.architecture.multiarch)
                log(f"{root}: its sysconfigdata named another location (the cache was moved or "
                    "copied); rewrote it for this one")
        self._sysroot = root

    def _assemble(self, debs: list[Deb], root: Path, key: str, log) -> None:
        log(f"assembling {self.target.name} sysroot from {len(debs)} {self.apt.arch} packages "
            f"({sum(d.size for d in debs) / 1e6:.1f} MB) ...")
        debdir = self.cache / "debs" / self.target.name
        need = [d for d in debs if not _deb_ok(debdir / d.filename, d.sha256)]
        if need:
            # apt-get download checks each file's hash; the apt state and debdir are per target.
            with locks.cache_lock(self.cache, f"apt-{self.target.name}", log):
                self.apt.download([f"{d.package}={d.version}" for d in need], debdir)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            packages = []
            for d in debs:
                path = debdir / d.filename
                if not _deb_ok(path, d.sha256):
                    raise ToolchainError(f"{path}: sha256 differs from the signed index; delete it and retry")
                _run(["dpkg-deb", "-x", str(path), str(tmp)], f"unpacking {d.filename}")
                listing = _run(["dpkg-deb", "-c", str(path)], f"listing {d.filename}")
                # `dpkg-deb -c` lines: mode owner size date time path [-> target]
                paths = [fields[5] for fields in map(str.split, listing.splitlines()) if len(fields) >= 6]
                sonames = sorted({Path(p).name for p in paths if "/lib" in p and ".so" in Path(p).name})
                packages.append({"package": d.package, "version": d.version, "filename": d.filename,
                                 "sha256": d.sha256, "extra": d.extra, "sonames": sonames})
            _relativize_symlinks(tmp)
            name = crossenv.write_sysconfigdata(tmp, self.target.python, tmp / ".ot2wheels" / "sysconfig",
                                                self.target.architecture.multiarch)
            _precompile_stdlib(tmp, self.target.python, self.build_python())
            manifest = {
                "target": self.target.name,
                "python": self.target.python,
                "suites": list(self.target.debian.suites),  # type: ignore[union-attr]
                "sysconfigdata": name,
                "packages": packages,
            }
            body = json.dumps(manifest, indent=1, sort_keys=True)
            manifest["digest"] = hashlib.sha256(body.encode()).hexdigest()
            (tmp / ".ot2wheels" / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
            # The sysconfigdata copy names the final path, not tmp: rewrite it for `root`.
            for f in (tmp / ".ot2wheels" / "sysconfig").glob("*.py"):
                f.write_text(f.read_text().replace(str(tmp), str(root)))
            try:
                tmp.rename(root)
            except OSError:
                if not (root / ".ot2wheels" / "manifest.json").is_file():
                    raise
                shutil.rmtree(tmp)  # another process finished the same sysroot first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"sysroot ready: {root}")


def _deb_ok(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def _relativize_symlinks(root: Path) -> None:
    """Absolute links (libz.so -> /lib/...) would point into the host: make them relative."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                dest = os.readlink(p)
                if dest.startswith("/"):
                    p.unlink()
                    p.symlink_to(os.path.relpath(root / dest.lstrip("/"), p.parent))


def _precompile_stdlib(root: Path, python: str, host_python: Path) -> None:
    """Byte-compile the target stdlib once (same X.Y, same bytecode): qemu startup is ~3x faster."""
    libdir = root / "usr" / "lib" / f"python{python}"
    subprocess.run(
        [str(host_python), "-m", "compileall", "-q", "-j0", "-x", r"(test|lib2to3|idlelib)/", str(libdir)],
        capture_output=True,
    )
