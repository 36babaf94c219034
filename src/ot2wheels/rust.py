"""Rust extensions (maturin, setuptools-rust): the cargo/PyO3 half of the cross environment.

What a Rust cross build needs, and where it comes from here:
- a host `rustc`/`cargo` whose release equals the target's Rust standard library (Debian's
  `rustc-web`/`cargo-web`, installed on the host);
- the target's standard library (`libstd-rust-web-dev`, armhf), unpacked into the target
  sysroot like any other target library (recipe `target-libs`); rustc finds it with
  `--sysroot=<sysroot>/usr`, passed for the target only (build scripts and proc macros are
  host code and keep the host's std). Where the suite ships another release (bullseye: 1.78)
  or the sysroot has none (a vendor SDK), the host release's std for the target's arch is
  fetched from the host's Debian suite into the cache instead (`host_release_std`); glibc
  symbol versions are bound at link time, against the target sysroot's libc (docs/rust.md).
  A rustup-managed toolchain whose std for the target is installed
  (`rustup target add armv7-unknown-linux-gnueabihf`) is preferred when present: it needs
  neither the Debian std nor a matching release;
- crates (`prepare_crates()`, the build log says which source was used):
  1. a vendored copy in the cache keyed by the sdist's Cargo.lock sha256 (a rebuild is offline);
  2. else the crate registry (crates.io, or `OT2WHEELS_CRATES_INDEX`) when it answers:
     `cargo vendor --locked` into that cache, then the build uses the vendored copy;
  3. else an offline directory source, by default Debian's packaged crate sources in
     /usr/share/cargo/registry (`librust-*-dev`). Those are rarely the versions a Cargo.lock
     pins, so the lock is then regenerated against them and the changes written to the log;
- the linker and C compiler of the target toolchain, and PyO3's cross variables.

`rust_env()` returns those variables as a dict to merge over `Toolchain.env()`;
`prepare_crates()` resolves the crates before the build, so a missing crate is one clear line.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from .download import ca_bundle, ssl_context
from .errors import BuildError, ToolchainError
from .fsutil import atomic_write

if TYPE_CHECKING:
    from .recipes import Recipe
    from .targets import Target
    from .toolchains.base import Toolchain

DEFAULT_REGISTRY = Path("/usr/share/cargo/registry")
RUST_BACKENDS = ("maturin", "setuptools-rust")
# The Debian package holding the target's Rust standard library (goes into the sysroot).
DEBIAN_STD_PACKAGE = "libstd-rust-web-dev"
# What the host needs (./bootstrap, the Docker image): versions must equal the sysroot's std.
HOST_PACKAGES = ("rustc-web", "cargo-web", "libstd-rust-web-dev", "librust-pyo3-dev")
# Debian's crate sources the offline path builds packages/cryptography (38.0.4) from.
CRATE_PACKAGES = ("librust-asn1-dev", "librust-pem-dev", "librust-ouroboros-dev", "librust-chrono-dev",
                  "librust-indoc-dev", "librust-paste-dev")
# crates.io's sparse index; OT2WHEELS_CRATES_INDEX names another one ("off": never go online).
CRATES_IO_INDEX = "sparse+https://index.crates.io/"

_TRIPLES = {  # (platform arch, GNU triplet suffix) -> Rust target triple
    ("armv7l", "gnueabihf"): "armv7-unknown-linux-gnueabihf",
    ("armv6l", "gnueabihf"): "arm-unknown-linux-gnueabihf",
    ("aarch64", "gnu"): "aarch64-unknown-linux-gnu",
}


def rust_triple(target: Target) -> str:
    suffix = target.triplet.rsplit("-", 1)[-1]
    try:
        return _TRIPLES[(target.arch, suffix)]
    except KeyError:
        raise ToolchainError(f"target {target.name}: no Rust target triple known for {target.arch} "
                             f"/ {target.triplet}; add one to ot2wheels.rust._TRIPLES") from None


def needs_rust(recipe: Recipe) -> bool:
    return recipe.backend in RUST_BACKENDS


@dataclass(frozen=True)
class RustTools:
    rustc: Path
    cargo: Path
    release: str  # "1.85.0"
    rustup: str = ""  # the rustup toolchain name when its own std for the target is used
    note: str = ""  # where the std comes from, when not the sysroot

    def describe(self) -> str:
        if self.rustup:
            return f"rustup toolchain {self.rustup} (rustc {self.release}, its own std for the target)"
        return f"rustc {self.release} ({self.rustc}) with {DEBIAN_STD_PACKAGE} {self.release}{self.note}"


def _rustup() -> Path | None:
    found = shutil.which("rustup")
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin" / "rustup"
    return Path(found) if found else home if home.is_file() else None


def find_rustup(triple: str) -> RustTools | None:
    """rustup's active toolchain, if it has the target's std installed; None otherwise."""
    rustup = _rustup()
    if rustup is None or os.environ.get("OT2WHEELS_RUSTUP") == "0":
        return None

    def run(*args: str) -> str:
        try:
            r = subprocess.run([str(rustup), *args], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return r.stdout.strip() if r.returncode == 0 else ""

    if triple not in run("target", "list", "--installed").split():
        return None
    rustc, cargo = Path(run("which", "rustc") or "/nonexistent"), Path(run("which", "cargo") or "/nonexistent")
    release = _release(rustc) if rustc.is_file() and cargo.is_file() else None
    if not release:
        return None
    name = run("show", "active-toolchain").split(" ")[0] or "active"
    return RustTools(rustc, cargo, release, rustup=name)


def _release(rustc: Path) -> str | None:
    try:
        out = subprocess.run([str(rustc), "-vV"], capture_output=True, text=True, timeout=60).stdout
    except OSError:
        return None
    m = re.search(r"^release: (\S+)$", out, re.M)
    return m.group(1) if m else None


def find_rust(release: str | None = None) -> RustTools:
    """A host rustc + cargo pair, of `release` when given (it must match the target's std)."""
    candidates = []
    if os.environ.get("OT2WHEELS_RUSTC"):
        candidates.append(Path(os.environ["OT2WHEELS_RUSTC"]))
    candidates.append(Path("/usr/bin/rustc"))  # Debian's rustc-web
    if shutil.which("rustc"):
        candidates.append(Path(shutil.which("rustc")))  # type: ignore[arg-type]
    seen = []
    for rustc in candidates:
        if not rustc.is_file():
            continue
        got = _release(rustc)
        seen.append(f"{rustc} ({got})")
        cargo = rustc.with_name("cargo")
        if got and (release is None or got == release) and cargo.is_file():
            return RustTools(rustc, cargo, got)
    want = f" {release}" if release else ""
    raise ToolchainError(f"no host rustc{want} with a cargo beside it (found: {', '.join(seen) or 'none'}); "
                         f"install Debian's {' '.join(HOST_PACKAGES)} at the version of the target's "
                         f"{DEBIAN_STD_PACKAGE}, or point OT2WHEELS_RUSTC at a matching rustc")


def target_std_release(toolchain: Toolchain) -> str | None:
    """The Rust release of the std in the sysroot, as the toolchain reports it (Debian targets)."""
    version = toolchain.package_version(DEBIAN_STD_PACKAGE)
    return version.split(":")[-1].split("+")[0].split("~")[0].split("-")[0] if version else None


def host_debian_rust() -> tuple[str, str] | None:
    """(codename, Debian version of rustc-web) of this host, or None when it is not Debian's."""
    try:
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rustc-web"], capture_output=True,
                                 text=True, timeout=60).stdout.strip()
        release = Path("/etc/os-release").read_text()
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^VERSION_CODENAME=(\w+)", release, re.M)
    return (m.group(1), version) if m and version else None


def host_release_std(cache: Path, triple: str, arch: str, tools: RustTools, keyring: str) -> Path:
    """The target's std at the host rustc's exact Debian version, unpacked apart from any sysroot.

    For a target whose own suite ships another Rust release (bullseye: 1.78, host: 1.85). rustc
    reads only `lib/rustlib/<triple>` under `--sysroot`, and the std holds no glibc symbol
    versions: those are bound when the cdylib is linked, against the target sysroot's libc.
    """
    from .targets import DebianSource
    from .toolchains.debapt import PrivateApt, run

    host = host_debian_rust()
    if host is None or not host[1].startswith(tools.release):
        raise ToolchainError(f"no {DEBIAN_STD_PACKAGE} for {triple} at rustc {tools.release}: the host's rustc is "
                             "not Debian's rustc-web; install a rustup toolchain with "
                             f"`rustup target add {triple}`")
    codename, version = host
    root = cache / "rust-std" / f"{version.replace(':', '%3a')}_{arch}"
    if (root / "usr" / "lib" / "rustlib" / triple / "lib").is_dir():
        return root
    mm = ".".join(tools.release.split(".")[:2])
    apt = PrivateApt(cache / "apt" / f"rust-std-{codename}-{arch}",
                     DebianSource(suites=(codename, f"{codename}-updates"), keyring=keyring, packages=()), arch)
    apt.prepare()
    apt.update()
    debs = cache / "rust-std" / f".debs-{os.getpid()}"
    tmp = cache / "rust-std" / f".{root.name}.{os.getpid()}"
    try:
        # apt-get download checks each .deb against the signed index's sha256
        apt.download([f"{DEBIAN_STD_PACKAGE}={version}", f"libstd-rust-web-{mm}={version}"], debs)
        for deb in sorted(debs.glob("*.deb")):
            run(["dpkg-deb", "-x", str(deb), str(tmp)], f"unpacking {deb.name}")
        try:
            tmp.rename(root)
        except OSError:
            if not (root / "usr" / "lib" / "rustlib" / triple / "lib").is_dir():
                raise
    finally:
        shutil.rmtree(debs, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _cargo_home_with(home: Path, config: str) -> Path:
    """`home` with `config` as its config.toml (rewritten atomically only when it differs)."""
    path = home / "config.toml"
    if not path.is_file() or path.read_text() != config:
        atomic_write(path, config)
    return home


def cargo_home(cache: Path, registry: Path = DEFAULT_REGISTRY) -> Path:
    """A CARGO_HOME whose config replaces crates.io by the offline directory source `registry`."""
    home = cache / "cargo-home" / re.sub(r"[^A-Za-z0-9]+", "_", str(registry)).strip("_")
    config = (
        "# written by ot2wheels: crates come from an offline directory source only\n"
        '[source.crates-io]\nreplace-with = "offline"\n\n'
        f'[source.offline]\ndirectory = "{registry}"\n\n'
        "[net]\noffline = true\n"
    )
    return _cargo_home_with(home, config)


def _bin_dir(cache: Path, tools: RustTools) -> Path:
    """A folder with `cargo` and `rustc` links first on PATH (maturin calls `cargo` by name)."""
    d = cache / "rust-bin" / tools.release
    d.mkdir(parents=True, exist_ok=True)
    for name, dest in (("cargo", tools.cargo), ("rustc", tools.rustc)):
        link = d / name
        if not link.is_symlink() or Path(os.readlink(link)) != dest:
            tmp = d / f".{name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(dest)
            tmp.replace(link)
    return d


def rust_env(toolchain: Toolchain, cache: Path, registry: Path = DEFAULT_REGISTRY,
             base_path: str | None = None, extra_path: tuple[Path, ...] = ()) -> dict[str, str]:
    """Cargo and PyO3 variables for cross-building Rust extensions; merge over `toolchain.env()`.

    `extra_path`: folders to put on PATH too, e.g. the build venv's bin (maturin runs `maturin`).
    """
    target = toolchain.target
    triple = rust_triple(target)
    sysroot = toolchain.sysroot
    std_dir = sysroot / "usr" / "lib" / "rustlib" / triple / "lib"
    tools = find_rustup(triple)
    if tools is None and not std_dir.is_dir() and target.debian is not None:
        raise ToolchainError(f"{target.name}: the sysroot has no Rust standard library for {triple} "
                             f"({std_dir}); add {DEBIAN_STD_PACKAGE!r} to the recipe's [build] target-libs "
                             f"(or install a rustup toolchain with `rustup target add {triple}`)")
    std_root = sysroot / "usr"
    if tools is None:
        wanted = target_std_release(toolchain) if std_dir.is_dir() else None
        try:
            tools = find_rust(wanted) if std_dir.is_dir() else None
        except ToolchainError:
            if wanted is None:
                raise
        if tools is None:
            # The suite's std is another release than the host's rustc (bullseye ships 1.78), or
            # the sysroot has none (a vendor SDK): the host release's std for the target, still
            # linking the target's own libc.
            tools = find_rust()
            keyring = target.debian.keyring if target.debian else "/usr/share/keyrings/debian-archive-keyring.gpg"
            std_root = host_release_std(cache, triple, target.architecture.debian, tools, keyring) / "usr"
            own = f"{target.name}'s own std is {wanted}" if wanted else f"{target.name}'s sysroot has no std"
            tools = RustTools(tools.rustc, tools.cargo, tools.release, note=f" from {std_root.parent} ({own})")
    cc = shlex.split(toolchain.compilers()["CC"])
    cxx = shlex.split(toolchain.compilers()["CXX"])
    libdirs = [d for d in toolchain.library_dirs if d.is_dir()]
    link_args = [*cc[1:], *(a for d in libdirs for a in (f"-L{d}", f"-Wl,-rpath-link,{d}"))]
    # Debian's std lives in the sysroot (target code only: build scripts keep the host's std)
    sysroot_flag = [] if tools.rustup else [f"--sysroot={std_root}"]
    rustflags = [*sysroot_flag, *(f"-Clink-arg={a}" for a in link_args)]
    key = triple.upper().replace("-", "_")
    low = triple.replace("-", "_")
    ar = toolchain.compilers().get("AR", f"{target.triplet}-ar")
    py_version = target.python
    env = {
        "PATH": ":".join([str(_bin_dir(cache, tools)), *map(str, extra_path),
                          base_path if base_path is not None else os.environ.get("PATH", "")]),
        "RUSTC": str(tools.rustc),
        "CARGO": str(tools.cargo),
        "CARGO_HOME": str(cargo_home(cache, registry)),
        "CARGO_NET_OFFLINE": "true",
        # for the build log: which compiler and std (prepare_crates notes the crate source)
        "OT2WHEELS_RUST_TOOLCHAIN": tools.describe(),
        "CARGO_BUILD_TARGET": triple,
        f"CARGO_TARGET_{key}_LINKER": cc[0],
        f"CARGO_TARGET_{key}_RUSTFLAGS": " ".join(rustflags),
        # the cc crate, for crates with C parts
        f"CC_{low}": cc[0],
        f"CXX_{low}": cxx[0],
        f"AR_{low}": ar,
        f"CFLAGS_{low}": " ".join(cc[1:]),
        f"CXXFLAGS_{low}": " ".join(cxx[1:]),
        # PyO3: build for the target's CPython, reading its (path-rewritten) sysconfigdata
        "PYO3_CROSS": "1",
        "PYO3_CROSS_LIB_DIR": str(toolchain.sysconfig_dir()),
        "PYO3_CROSS_PYTHON_VERSION": py_version,
        "PYO3_CROSS_PYTHON_IMPLEMENTATION": "CPython",
        # maturin as a PEP 517 backend: the target, and a plain linux_<arch> tag (the gate decides more)
        "MATURIN_PEP517_ARGS": f"--target {triple} --compatibility linux",
    }
    return env


_NO_PACKAGE = re.compile(r"no matching package named `([^`]+)` found")
_NO_VERSION = re.compile(r"failed to select a version for the requirement `([^`=\s]+) = \"([^\"]+)\"`"
                         r"(?: \(locked to ([^)]+)\))?")
_CANDIDATES = re.compile(r"candidate versions found which didn't match: ([^\n]+)")
_REQUIRED_BY = re.compile(r"required by package `([^`]+)`")
_NO_CRATE_IN_LOCK = re.compile(r"(?:failed to download|unable to get packages from source)[^\n]*`?([A-Za-z0-9_-]+) v([0-9][^ `\n]*)")


def explain_cargo_failure(output: str, registry: Path = DEFAULT_REGISTRY) -> str | None:
    """One line for a crate that cannot be had offline, from cargo's (long) output; None if not that."""
    by = _REQUIRED_BY.search(output)
    who = f" (required by {by.group(1)})" if by else ""
    if m := _NO_PACKAGE.search(output):
        return f"crate {m.group(1)} is not available offline: no version of it in {registry}{who}"
    if m := _NO_VERSION.search(output):
        cand = _CANDIDATES.search(output)
        has = f"the offline registry has {cand.group(1).strip()}" if cand else f"no version of it in {registry}"
        locked = f" (Cargo.lock pins {m.group(3)})" if m.group(3) else ""
        return f"crate {m.group(1)} is not available offline: needs {m.group(2)}{locked}, {has}{who}"
    if m := _NO_CRATE_IN_LOCK.search(output):
        return f"crate {m.group(1)} is not available offline: Cargo.lock pins {m.group(2)}, not in {registry}"
    return None


def find_cargo_manifest(tree: Path) -> Path | None:
    """The Cargo.toml of a Python project: maturin's manifest-path, the root one, else a shallow one."""
    pyproject = tree / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except tomllib.TOMLDecodeError:
            data = {}
        manifest = data.get("tool", {}).get("maturin", {}).get("manifest-path")
        if manifest and (tree / manifest).is_file():
            return tree / manifest
    if (tree / "Cargo.toml").is_file():
        return tree / "Cargo.toml"
    found = sorted(tree.glob("*/Cargo.toml")) + sorted(tree.glob("*/*/Cargo.toml"))
    return found[0] if found else None


def _registry_of(env: dict[str, str]) -> Path:
    """The directory source an offline CARGO_HOME (from `cargo_home`) points at."""
    config = Path(env.get("CARGO_HOME", "")) / "config.toml"
    m = re.search(r'directory = "([^"]+)"', config.read_text()) if config.is_file() else None
    return Path(m.group(1)) if m else DEFAULT_REGISTRY


def _cargo(argv: list[str], project: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([env.get("CARGO", "cargo"), *argv], cwd=project, env={**os.environ, **env},
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildError(f"cargo {argv[0]} in {project} took longer than {timeout:.0f} s") from None


def _cargo_failure(result: subprocess.CompletedProcess[str], project: Path, registry: Path, doing: str) -> BuildError:
    line = explain_cargo_failure(result.stderr + result.stdout, registry)
    if line:
        return BuildError(line)
    lines = result.stderr.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("error")), None)
    # the error and its "Caused by:" chain, on one line
    last = (" ".join(ln.strip() for ln in lines[start:start + 12] if ln.strip() and ln.strip() != "Caused by:")
            if start is not None else result.stderr.strip()[-300:])
    return BuildError(f"cargo could not {doing} {project}'s crates: {last}")


def preflight(tree: Path, env: dict[str, str], timeout: float = 300, locked: bool = False) -> None:
    """Resolve the project's crates offline before a build; a missing crate raises one clear line."""
    manifest = find_cargo_manifest(tree)
    if manifest is None:
        raise BuildError(f"{tree}: no Cargo.toml found; is this a Rust extension (backend maturin/setuptools-rust)?")
    triple = env.get("CARGO_BUILD_TARGET", "")
    argv = ["fetch", *(["--locked"] if locked else []), *(["--target", triple] if triple else [])]
    result = _cargo(argv, manifest.parent, env, timeout)
    if result.returncode != 0:
        raise _cargo_failure(result, manifest.parent, _registry_of(env), "resolve")


class CrateSource(Enum):
    VENDORED = "vendored copy in the cache (offline rebuild)"
    REGISTRY = "crate registry, vendored into the cache"
    OFFLINE = "offline directory source"


@dataclass(frozen=True)
class Crates:
    source: CrateSource
    env: dict[str, str]  # merge over the build environment
    note: str  # the build log line


def find_lock(manifest: Path, tree: Path) -> Path | None:
    """The Cargo.lock cargo will use: beside the manifest or in a folder above it (a workspace)."""
    for d in (manifest.parent, *manifest.parent.parents):
        if (d / "Cargo.lock").is_file():
            return d / "Cargo.lock"
        if d == tree:
            break
    return None


def crates_index(environ: dict[str, str] | None = None) -> str | None:
    """The sparse index to vendor from (OT2WHEELS_CRATES_INDEX, default crates.io); None: "off"."""
    value = (environ if environ is not None else os.environ).get("OT2WHEELS_CRATES_INDEX", CRATES_IO_INDEX)
    if value.strip().lower() in ("", "off", "offline", "0"):
        return None
    return value if value.startswith("sparse+") else "sparse+" + value


def registry_unreachable(index: str, timeout: float = 10) -> str | None:
    """Why the sparse index cannot be used (one phrase), or None when its config.json answers."""
    url = index.removeprefix("sparse+").rstrip("/") + "/config.json"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ssl_context()) as r:
            r.read(65536)
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"


def registry_home(cache: Path, index: str) -> Path:
    """A CARGO_HOME that downloads from `index` (crates.io itself, or a mirror replacing it)."""
    home = cache / "cargo-home" / ("registry-" + hashlib.sha256(index.encode()).hexdigest()[:16])
    lines = ["# written by ot2wheels: crates from a sparse registry", "[net]", "offline = false", ""]
    if index != CRATES_IO_INDEX:
        lines += ["[source.crates-io]", 'replace-with = "ot2wheels-mirror"', "",
                  "[source.ot2wheels-mirror]", f'registry = "{index}"', ""]
    if cafile := ca_bundle():
        lines += ["[http]", f'cainfo = "{cafile}"', ""]
    config = "\n".join(lines)
    return _cargo_home_with(home, config)


def vendor_dir(cache: Path, lock: Path) -> Path:
    return cache / "cargo-vendor" / hashlib.sha256(lock.read_bytes()).hexdigest()


_DONE = ".ot2wheels-complete"


def vendor_crates(manifest: Path, lock: Path, cache: Path, env: dict[str, str], index: str,
                  timeout: float = 1800) -> Path:
    """`cargo vendor --locked` from `index` into the cache, keyed by Cargo.lock's sha256; atomic."""
    dest = vendor_dir(cache, lock)
    if (dest / _DONE).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name[:16]}.", dir=dest.parent))
    try:
        venv = {**env, "CARGO_HOME": str(registry_home(cache, index)), "CARGO_NET_OFFLINE": "false"}
        result = _cargo(["vendor", "--locked", "--versioned-dirs", "--respect-source-config", "--manifest-path", str(manifest),
                         str(tmp / "crates")], manifest.parent, venv, timeout)
        if result.returncode != 0:
            raise _cargo_failure(result, manifest.parent, Path(index), f"vendor (from {index})")
        (tmp / "crates" / _DONE).write_text(lock.read_text())
        try:
            (tmp / "crates").rename(dest)
        except OSError:  # another build vendored the same lock meanwhile: keep theirs
            if not (dest / _DONE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _lock_versions(text: str) -> dict[str, set[str]]:
    try:
        packages = tomllib.loads(text).get("package", [])
    except tomllib.TOMLDecodeError:
        return {}
    out: dict[str, set[str]] = {}
    for pkg in packages:
        if "source" in pkg:  # registry crates only, not the project itself
            out.setdefault(pkg["name"], set()).add(pkg["version"])
    return out


def lock_changes(old: str, new: str) -> str:
    """What regenerating a Cargo.lock changed, as "name a -> b" items (for the build log)."""
    before, after = _lock_versions(old), _lock_versions(new)
    items = []
    for name in sorted(before.keys() | after.keys()):
        a, b = sorted(before.get(name, ())), sorted(after.get(name, ()))
        if a != b:
            items.append(f"{name} {'/'.join(a) or '(none)'} -> {'/'.join(b) or '(dropped)'}")
    return ", ".join(items) or "no version changes"


def prepare_crates(tree: Path, env: dict[str, str], cache: Path, log: Path | None = None,
                   timeout: float = 300) -> Crates:
    """Pick the crate source (vendored cache, registry, offline directory), resolve, log which.

    `env` is the build environment from `rust_env` (its CARGO_HOME is the offline fallback).
    """
    manifest = find_cargo_manifest(tree)
    if manifest is None:
        raise BuildError(f"{tree}: no Cargo.toml found; is this a Rust extension (backend maturin/setuptools-rust)?")
    lock = find_lock(manifest, tree)
    crates: Crates | None = None
    why_offline = "the sdist has no Cargo.lock to vendor"
    if lock is not None:
        index = crates_index()
        vendored = vendor_dir(cache, lock)
        if (vendored / _DONE).is_file():
            crates = Crates(CrateSource.VENDORED, {"CARGO_HOME": str(cargo_home(cache, vendored))},
                            f"{vendored} (Cargo.lock sha256 {vendored.name[:12]}, --locked)")
        elif index is None:
            why_offline = "OT2WHEELS_CRATES_INDEX=off"
        elif (why := registry_unreachable(index)) is not None:
            why_offline = f"registry not reachable: {why}"
        else:
            vendored = vendor_crates(manifest, lock, cache, env, index)
            crates = Crates(CrateSource.REGISTRY, {"CARGO_HOME": str(cargo_home(cache, vendored))},
                            f"{index} with the sdist's Cargo.lock (--locked), vendored into {vendored}")
    if crates is not None:
        env = {**env, **crates.env}
        preflight(tree, env, timeout, locked=True)
        if "--locked" not in env.get("MATURIN_PEP517_ARGS", "--locked"):
            crates.env["MATURIN_PEP517_ARGS"] = env["MATURIN_PEP517_ARGS"] + " --locked"
    else:
        registry = _registry_of(env)
        if not registry.is_dir():
            raise ToolchainError(f"{registry}: no offline crate registry ({why_offline}); install Debian's "
                                 "librust-*-dev packages the recipe needs (e.g. librust-pyo3-dev)")
        note = f"{registry} ({why_offline})"
        try:
            preflight(tree, env, timeout)
        except BuildError:
            if lock is None:
                raise
            # The lock pins versions the directory source lacks: resolve afresh against it.
            # Done only here, and logged: the crates differ from what upstream tested.
            old = lock.read_text()
            lock.rename(lock.with_name("Cargo.lock.sdist"))
            result = _cargo(["generate-lockfile", "--offline"], lock.parent, env, timeout)
            if result.returncode != 0:
                raise _cargo_failure(result, lock.parent, registry, "resolve") from None
            preflight(tree, env, timeout)
            note += f"; Cargo.lock regenerated against it: {lock_changes(old, lock.read_text())}"
        crates = Crates(CrateSource.OFFLINE, {}, note)
    if log is not None:
        with log.open("a") as f:
            f.write(f"# rust: {env.get('OT2WHEELS_RUST_TOOLCHAIN', 'cargo ' + env.get('CARGO', ''))}\n"
                    f"# crates: {crates.source.value}: {crates.note}\n")
    return crates
