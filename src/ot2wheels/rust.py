"""Rust extensions (maturin, setuptools-rust): the cargo/PyO3 half of the cross environment.

What a Rust cross build needs, and where it comes from here:
- a host `rustc`/`cargo` whose release equals the target's Rust standard library (Debian's
  `rustc-web`/`cargo-web`, installed on the host);
- the target's standard library (`libstd-rust-web-dev`, armhf), unpacked into the target
  sysroot like any other target library (recipe `target-libs`); rustc finds it with
  `--sysroot=<sysroot>/usr`, passed for the target only (build scripts and proc macros are
  host code and keep the host's std);
- crates: crates.io is out of reach, so cargo runs offline against a directory source, by
  default Debian's packaged crate sources in /usr/share/cargo/registry (`librust-*-dev`);
- the linker and C compiler of the target toolchain, and PyO3's cross variables.

`rust_env()` returns those variables as a dict to merge over `Toolchain.env()`;
`preflight()` resolves the crates offline first, so a missing crate is one clear line.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
# What the host needs (for the CI install script): versions must equal the sysroot's std.
HOST_PACKAGES = ("rustc-web", "cargo-web", "librust-pyo3-dev")

_TRIPLES = {  # (platform arch, GNU triplet suffix) -> Rust target triple
    ("armv7l", "gnueabihf"): "armv7-unknown-linux-gnueabihf",
    ("armv6l", "gnueabihf"): "arm-unknown-linux-gnueabihf",
    ("aarch64", "gnu"): "aarch64-unknown-linux-gnu",
}


def rust_triple(target: "Target") -> str:
    suffix = target.triplet.rsplit("-", 1)[-1]
    try:
        return _TRIPLES[(target.arch, suffix)]
    except KeyError:
        raise ToolchainError(f"target {target.name}: no Rust target triple known for {target.arch} "
                             f"/ {target.triplet}; add one to ot2wheels.rust._TRIPLES") from None


def needs_rust(recipe: "Recipe") -> bool:
    return recipe.backend in RUST_BACKENDS


@dataclass(frozen=True)
class RustTools:
    rustc: Path
    cargo: Path
    release: str  # "1.85.0"


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


def target_std_release(toolchain: "Toolchain") -> str | None:
    """The Rust release of the std in the sysroot, from the toolchain manifest (Debian targets)."""
    manifest = getattr(toolchain, "manifest", None)
    if not isinstance(manifest, dict):
        return None
    for pkg in manifest.get("packages", []):
        if pkg.get("package") == DEBIAN_STD_PACKAGE:
            return str(pkg["version"]).split(":")[-1].split("+")[0].split("~")[0].split("-")[0]
    return None


def cargo_home(cache: Path, registry: Path = DEFAULT_REGISTRY) -> Path:
    """A CARGO_HOME whose config replaces crates.io by the offline directory source `registry`."""
    home = cache / "cargo-home" / re.sub(r"[^A-Za-z0-9]+", "_", str(registry)).strip("_")
    config = (
        "# written by ot2wheels: crates come from an offline directory source only\n"
        '[source.crates-io]\nreplace-with = "offline"\n\n'
        f'[source.offline]\ndirectory = "{registry}"\n\n'
        "[net]\noffline = true\n"
    )
    path = home / "config.toml"
    if not path.is_file() or path.read_text() != config:
        atomic_write(path, config)
    return home


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


def rust_env(toolchain: "Toolchain", cache: Path, registry: Path = DEFAULT_REGISTRY,
             base_path: str | None = None, extra_path: tuple[Path, ...] = ()) -> dict[str, str]:
    """Cargo and PyO3 variables for cross-building Rust extensions; merge over `toolchain.env()`.

    `extra_path`: folders to put on PATH too, e.g. the build venv's bin (maturin runs `maturin`).
    """
    target = toolchain.target
    triple = rust_triple(target)
    sysroot = toolchain.sysroot
    std_dir = sysroot / "usr" / "lib" / "rustlib" / triple / "lib"
    if not std_dir.is_dir():
        raise ToolchainError(f"{target.name}: the sysroot has no Rust standard library for {triple} "
                             f"({std_dir}); add {DEBIAN_STD_PACKAGE!r} to the recipe's [build] target-libs")
    if not registry.is_dir():
        raise ToolchainError(f"{registry}: no offline crate registry; install Debian's librust-*-dev "
                             "packages the recipe needs (e.g. librust-pyo3-dev)")
    tools = find_rust(target_std_release(toolchain))
    cc = shlex.split(toolchain.compilers()["CC"])
    cxx = shlex.split(toolchain.compilers()["CXX"])
    libdirs = [d for d in toolchain.library_dirs if d.is_dir()]
    link_args = [*cc[1:], *(a for d in libdirs for a in (f"-L{d}", f"-Wl,-rpath-link,{d}"))]
    rustflags = [f"--sysroot={sysroot / 'usr'}", *(f"-Clink-arg={a}" for a in link_args)]
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


def preflight(tree: Path, env: dict[str, str], timeout: float = 300) -> None:
    """Resolve the project's crates offline before a build; a missing crate raises one clear line."""
    manifest = find_cargo_manifest(tree)
    if manifest is None:
        raise BuildError(f"{tree}: no Cargo.toml found; is this a Rust extension (backend maturin/setuptools-rust)?")
    project = manifest.parent
    full = {**os.environ, **env}
    triple = env.get("CARGO_BUILD_TARGET", "")
    argv = [env.get("CARGO", "cargo"), "fetch", *(["--target", triple] if triple else [])]
    result = subprocess.run(argv, cwd=project, env=full, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        registry = Path(re.search(r'directory = "([^"]+)"',
                                  (Path(env["CARGO_HOME"]) / "config.toml").read_text()).group(1)) \
            if env.get("CARGO_HOME") else DEFAULT_REGISTRY
        line = explain_cargo_failure(result.stderr + result.stdout, registry)
        if line:
            raise BuildError(line)
        last = next((ln for ln in result.stderr.splitlines() if ln.startswith("error")), result.stderr.strip()[-300:])
        raise BuildError(f"cargo could not resolve {project}'s crates offline: {last}")
