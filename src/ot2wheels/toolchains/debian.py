"""Debian toolchain: Debian's cross gcc + a sysroot unpacked from the suite's .debs (armhf, arm64).

apt does the downloading and verifies every .deb against the suite's signed Release file;
we run it with a private state directory (`debapt`) so the host's own apt configuration is
untouched. The build Python comes with the toolchain (`buildpython`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import tempfile
from pathlib import Path

from .. import crossenv, fsutil, hosttools, locks
from ..errors import ToolchainError
from ..fsutil import atomic_write
from ..paths import Layout
from ..targets import DebianSource, Target
from . import buildpython, debapt
from .base import Toolchain


class DebianToolchain(Toolchain):
    def __init__(self, target: Target, layout: Layout, extra_packages: tuple[str, ...] = ()) -> None:
        if target.debian is None:
            raise ToolchainError(f"target {target.name} has no [debian] table")
        self.target = target
        self.cache = cache = layout.cache
        self.extra_packages = tuple(sorted(set(extra_packages)))
        self.apt = debapt.PrivateApt(cache / "apt" / target.name, target.debian, target.architecture.debian)
        self._sysroot: Path | None = None
        self._manifest: dict | None = None
        self._build_python: buildpython.BuildPython | None = None

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
        return buildpython.combined_digest(self.manifest["digest"], self.build_python_info())

    def package_version(self, name: str) -> str | None:
        """The Debian version of `name` in the sysroot (None when it is not there)."""
        for pkg in self.manifest["packages"]:
            if pkg.get("package") == name:
                return str(pkg["version"])
        return None

    def build_python(self) -> Path:
        return self.build_python_info().path

    def build_python_info(self, refresh: bool = False, log=print) -> buildpython.BuildPython:
        """Host CPython first, else the suite's amd64 one unpacked into the cache, else uv's."""
        if self._build_python is None or refresh:
            self._build_python = buildpython.find(self.target, self.cache, refresh=refresh, log=log)
        assert self._build_python is not None
        return self._build_python

    def build_python_status(self) -> str:
        ready = buildpython.find(self.target, self.cache, acquire=False)
        return ready.describe() if ready else "not acquired yet (`invoke toolchain.setup` gets it)"

    def compilers(self) -> dict[str, str]:
        t, s = self.target.triplet, self.sysroot
        return {
            "CC": f"{t}-gcc --sysroot={s}",
            "CXX": shlex.join([f"{t}-g++", f"--sysroot={s}", *self.cxx_runtime_flags()]),
            "AR": f"{t}-ar",
            "RANLIB": f"{t}-ranlib",
            "STRIP": f"{t}-strip",
            "READELF": f"{t}-readelf",
        }

    def cxx_runtime_flags(self) -> list[str]:
        """Flags that make g++ use the suite's own libstdc++ headers (`libstdcxx` in targets.toml).

        Headers are what matter: a symbol keeps the version node it was introduced with, so
        code compiled against libstdc++ N's headers needs only GLIBCXX versions of N, whichever
        libstdc++.so it is linked against."""
        src = self.target.debian
        if src is None or not src.libstdcxx:
            return []
        v, s, m = src.libstdcxx, self.sysroot, self.target.architecture.multiarch
        dirs = [s / "usr/include/c++" / v, s / "usr/include" / m / "c++" / v, s / "usr/include/c++" / v / "backward"]
        missing = [d for d in dirs[:2] if not d.is_dir()]
        if missing:
            raise ToolchainError(f"{self.target.name}: libstdcxx = \"{v}\" but {missing[0]} is missing from the "
                                 f"sysroot; is libstdc++-{v}-dev in the suite? (`invoke toolchain.setup --refresh`)")
        return ["-nostdinc++", *(f"-isystem{d}" for d in dirs if d.is_dir())]

    def system_libs(self) -> set[str]:
        """Shared libraries the target itself has (not those only a recipe's target-libs add)."""
        return {so for pkg in self.manifest["packages"] if not pkg["extra"] for so in pkg["sonames"]}

    # -- setup ----------------------------------------------------------------------------
    def plan(self) -> list[debapt.Deb]:
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
            list(src.all_packages), list(src.exclude), list(self.extra_packages),
        ]).encode()).hexdigest()
        memo = self.apt.state / "plans" / f"{memo_key}.json"
        if memo.is_file():
            return [debapt.Deb(**d) for d in json.loads(memo.read_text())]
        debs = self._resolve(src)
        atomic_write(memo, json.dumps([d.__dict__ for d in debs]))
        return debs

    def _resolve(self, src: DebianSource) -> list[debapt.Deb]:
        base = set(self.apt.closure(list(src.packages), src.exclude))
        wanted = set(base)
        # build-only packages (libstdc++-N-dev, a recipe's target-libs) are not the device's:
        # their shared libraries are not counted as system libraries
        if self.extra_packages or src.all_packages != src.packages:
            wanted |= set(self.apt.closure([*src.all_packages, *self.extra_packages], src.exclude))
        return debapt.debs_for(self.apt, wanted, base)

    def ensure(self, refresh: bool = False, log=print) -> None:
        if self._sysroot is not None and not refresh:
            return
        self.build_python_info(refresh, log)
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

    def _assemble(self, debs: list[debapt.Deb], root: Path, key: str, log) -> None:
        log(f"assembling {self.target.name} sysroot from {len(debs)} {self.apt.arch} packages "
            f"({sum(d.size for d in debs) / 1e6:.1f} MB) ...")
        debdir = self.cache / "debs" / self.target.name
        need = [d for d in debs if not debapt.deb_ok(debdir / d.filename, d.sha256)]
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
                if not debapt.deb_ok(path, d.sha256):
                    raise ToolchainError(f"{path}: sha256 differs from the signed index; delete it and retry")
                debapt.run(["dpkg-deb", "-x", str(path), str(tmp)], f"unpacking {d.filename}")
                listing = debapt.run(["dpkg-deb", "-c", str(path)], f"listing {d.filename}")
                # `dpkg-deb -c` lines: mode owner size date time path [-> target]
                paths = [fields[5] for fields in map(str.split, listing.splitlines()) if len(fields) >= 6]
                sonames = sorted({Path(p).name for p in paths if "/lib" in p and ".so" in Path(p).name})
                packages.append({"package": d.package, "version": d.version, "filename": d.filename,
                                 "sha256": d.sha256, "extra": d.extra, "sonames": sonames})
            debapt.relativize_symlinks(tmp)
            name = crossenv.write_sysconfigdata(tmp, self.target.python, tmp / ".ot2wheels" / "sysconfig",
                                                self.target.architecture.multiarch)
            debapt.precompile_stdlib(tmp, self.target.python, self.build_python())
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
            fsutil.rename_tree(tmp, root, root / ".ot2wheels" / "manifest.json")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"sysroot ready: {root}")
