"""The three ways the benchmark builds one sdist: cross, emulated (qemu-arm), native x86-64.

All three run the same PEP 517 hook (`build_wheel` of the sdist's backend) on a fresh
extraction of the same verified sdist, one compile job at a time, without ccache, and are
timed around that hook only (extraction and setup are not counted).

Emulated: Debian's armhf gcc-12/binutils are unpacked into a bench-only sysroot (the target's
packages + EMULATED_PACKAGES) and every compiler program (gcc, cc1, as, collect2, ld, ...) runs
under qemu-arm, driven by the target's own CPython (also under qemu-arm) with setuptools
installed into a target directory. No binfmt_misc is needed: each program is a small host
script `exec qemu-arm -L SYSROOT <armhf program>`, and gcc finds them first through -B.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ot2wheels import buildenv, crossenv, smoke, sources
from ot2wheels.build import SOURCE_DATE_EPOCH, parallel_env
from ot2wheels.paths import Layout
from ot2wheels.recipes import Recipe
from ot2wheels.targets import Target
from ot2wheels.toolchains import Toolchain, get_toolchain

EMULATED_PACKAGES = ("gcc-12", "g++-12", "cpp-12", "binutils-arm-linux-gnueabihf", "libgcc-12-dev")
GCC_VERSION = "12"

# Runs the backend's build_wheel hook; argv: backend spec, output dir, backend-path entries.
# The tree is the cwd.
HOOK = r"""
import importlib, os, sys
sys.path[:0] = [os.path.join(os.getcwd(), p) for p in sys.argv[3:]] + [os.getcwd()]
mod, _, attr = sys.argv[1].partition(":")
backend = importlib.import_module(mod)
for part in filter(None, attr.split(".")):
    backend = getattr(backend, part)
print("built", backend.build_wheel(sys.argv[2]))
"""


@dataclass
class SideResult:
    side: str  # cross | emulated | native
    recipe: str
    seconds: float
    wheel: str
    machine: str  # ELF machine of the wheel's extension modules (ARM / x86-64)


class BenchFailed(Exception):
    pass


def backend_of(tree: Path) -> list[str]:
    """[backend spec, *backend-path] from pyproject.toml (PEP 517 default: setuptools legacy)."""
    pyproject = tree / "pyproject.toml"
    if pyproject.is_file():
        system = tomllib.loads(pyproject.read_text()).get("build-system", {})
        if spec := system.get("build-backend"):
            return [spec, *system.get("backend-path", [])]
    return ["setuptools.build_meta:__legacy__"]


def hook(tree: Path, out: Path) -> list[str]:
    spec, *paths = backend_of(tree)
    return ["-c", HOOK, spec, str(out), *paths]


def fresh_tree(recipe: Recipe, cache: Path, work: Path) -> Path:
    archive = sources.fetch_source(recipe, cache)
    dest = Path(tempfile.mkdtemp(prefix=f"{recipe.name}.", dir=work))
    tree = sources.extract(archive, dest)
    sources.apply_patches(recipe, tree)
    return tree


def elf_machine(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith(".so") or ".so." in name:
                head = zf.read(name)[:20]
                machine = int.from_bytes(head[18:20], "little")
                return {40: "ARM", 62: "x86-64"}.get(machine, f"e_machine {machine}")
    return "no ELF"


def _timed(cmd_runner, recipe: Recipe, side: str, out: Path, log: Path) -> SideResult:
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = cmd_runner()
    seconds = time.monotonic() - started
    log.write_text(proc.stdout + proc.stderr)
    wheels = sorted(out.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise BenchFailed(f"{side} build of {recipe.name} failed (exit {proc.returncode}); log: {log}")
    return SideResult(side, recipe.name, round(seconds, 2), wheels[0].name, elf_machine(wheels[0]))


def _host_env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "_PYTHON", "VIRTUAL_ENV", "CC", "CXX", "LDSHARED", "CFLAGS",
                                 "CPPFLAGS", "LDFLAGS", "MAKEFLAGS"))}
    return {**base, **extra}


def cross_build(recipe: Recipe, target: Target, layout: Layout, work: Path) -> SideResult:
    tc = get_toolchain(target, layout, recipe.target_libs)
    tc.ensure()
    python = buildenv.ensure_build_env(tc.build_python(), recipe.requires, layout.cache)
    tree = fresh_tree(recipe, layout.cache, work)
    out = tree.parent / "out"
    env = _host_env({**tc.env(), **parallel_env(1, work), **dict(recipe.env), "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
    return _timed(lambda: subprocess.run([str(python), *hook(tree, out)], cwd=tree,
                                         env=env, capture_output=True, text=True),
                  recipe, "cross", out, tree.parent / "cross.log")


def target_cflags(tc: Toolchain) -> str:
    """The target CPython's CFLAGS (-O2 -g ...), from its sysconfigdata."""
    ns: dict = {}
    exec(crossenv.find_sysconfigdata(tc.sysroot, tc.target.python).read_text(), ns)
    return ns["build_time_vars"]["CFLAGS"]


def native_build(recipe: Recipe, target: Target, layout: Layout, work: Path) -> SideResult:
    """The same sdist for x86-64: host gcc, a host CPython of the target's X.Y, the target's CFLAGS.

    (CFLAGS in the environment *replaces* the interpreter's own: the host CPython's -O3 becomes the
    target's -O2 -g ..., so both sides compile with the same options.)
    """
    tc = get_toolchain(target, layout, recipe.target_libs)
    tc.ensure()
    python = buildenv.ensure_build_env(tc.build_python(), recipe.requires, layout.cache)
    tree = fresh_tree(recipe, layout.cache, work)
    out = tree.parent / "out"
    env = _host_env({**parallel_env(1, work), "CFLAGS": target_cflags(tc), **dict(recipe.env),
                     "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
    return _timed(lambda: subprocess.run([str(python), *hook(tree, out)], cwd=tree,
                                         env=env, capture_output=True, text=True),
                  recipe, "native", out, tree.parent / "native.log")


def emulated_toolchain(recipe: Recipe, target: Target, layout: Layout) -> Toolchain:
    tc = get_toolchain(target, layout, (*EMULATED_PACKAGES, *recipe.target_libs))
    tc.ensure()
    return tc


def wrappers(tc: Toolchain, dest: Path) -> Path:
    """Host scripts that run each armhf compiler program of the sysroot under qemu-arm."""
    s, t = tc.sysroot, tc.target.triplet
    libexec = s / "usr" / "lib" / "gcc" / t / GCC_VERSION
    dest.mkdir(parents=True, exist_ok=True)
    programs = {
        "gcc": f"{s}/usr/bin/{t}-gcc-{GCC_VERSION} --sysroot={s} -B{dest}/",
        "g++": f"{s}/usr/bin/{t}-g++-{GCC_VERSION} --sysroot={s} -B{dest}/",
        "cc1": f"{libexec}/cc1", "cc1plus": f"{libexec}/cc1plus", "collect2": f"{libexec}/collect2",
        "lto-wrapper": f"{libexec}/lto-wrapper", "lto1": f"{libexec}/lto1",
        "as": f"{s}/usr/bin/{t}-as", "ld": f"{s}/usr/bin/{t}-ld.bfd",
    }
    for name, argv in programs.items():
        script = dest / name
        script.write_text(f'#!/bin/sh\nexec {" ".join(tc.qemu_command())} {argv} "$@"\n')
        script.chmod(0o755)
    # Whatever asks for the triplet-named compiler (sysconfig's CC) gets the emulated one too,
    # never the host's cross gcc of the same name.
    for alias, real in ((f"{t}-gcc", "gcc"), (f"{t}-g++", "g++"), ("cc", "gcc"), ("c++", "g++")):
        link = dest / alias
        link.unlink(missing_ok=True)
        link.symlink_to(real)
    return dest


def target_site(target: Target, requires: tuple[str, ...], dest: Path) -> Path:
    """A target directory with the build requirements for the target's CPython (pure wheels)."""
    if not (dest / ".complete").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        smoke.install_for_target(target, dest, sorted({"setuptools==80.9.0", *requires}))
        (dest / ".complete").touch()
    return dest


def emulated_build(recipe: Recipe, target: Target, layout: Layout, work: Path) -> SideResult:
    tc = emulated_toolchain(recipe, target, layout)
    bench_cache = layout.cache / "bench"
    bin_dir = wrappers(tc, bench_cache / "qemu-wrappers" / tc.sysroot.name)
    site = target_site(target, recipe.requires, bench_cache / "target-site" /
                       f"{target.name}-{hashlib.sha256(repr(sorted(recipe.requires)).encode()).hexdigest()[:12]}")
    tree = fresh_tree(recipe, layout.cache, work)
    out = tree.parent / "out"
    env = {
        **parallel_env(1, work), **dict(recipe.env),
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1",
        "CC": f"{bin_dir}/gcc", "CXX": f"{bin_dir}/g++",
        "LDSHARED": f"{bin_dir}/gcc -shared", "LDCXXSHARED": f"{bin_dir}/g++ -shared",
        "CPPFLAGS": f"-I{tc.sysroot}/usr/include/python{target.python}",
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
    }
    # CFLAGS would replace the target CPython's own (-O2 -g ...): the emulated side must use those.
    leaked = [v for v in ("CFLAGS", "LDFLAGS") if v in os.environ]
    if leaked:
        raise BenchFailed(f"unset {', '.join(leaked)} before benchmarking (they would change the flags)")
    return _timed(lambda: tc.run_target([str(tc.target_python), *hook(tree, out)],
                                        env=env, cwd=tree, timeout=7200),
                  recipe, "emulated", out, tree.parent / "emulated.log")
