"""The cross environment, computed once as a dict of variables (no long-lived shell).

A host CPython X.Y becomes a cross build for the target when:
- `sysconfig` reads the *target's* `_sysconfigdata_*` (paths rewritten into the sysroot),
  which gives EXT_SUFFIX, SOABI and the compiler settings of the target;
- `_PYTHON_HOST_PLATFORM` makes the platform tag `linux_armv7l` (`linux_aarch64`);
- CC/CXX/LDSHARED call the cross compiler with `--sysroot`, and the sysroot's library
  directories come first (Debian's cross gcc otherwise finds its own, newer glibc first).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Protocol

from .errors import ToolchainError
from .fsutil import atomic_write
from .targets import Target


class CrossToolchain(Protocol):
    """What the cross environment needs of a toolchain (`toolchains.base.Toolchain` has it all);
    a protocol here, so that this module does not import the toolchains that import it."""

    target: Target

    @property
    def sysroot(self) -> Path: ...

    @property
    def library_dirs(self) -> list[Path]: ...

    def compilers(self) -> dict[str, str]: ...

    def sysconfig_dir(self) -> Path: ...

# Absolute /usr/include and /usr/lib paths in sysconfigdata, as values or after -I/-L.
_ABS_PATH = re.compile(r"(?P<lead>^|[\s'\"=]|-I|-L)(?P<path>/usr/(?:include|lib|local/include|local/lib))")


def find_sysconfigdata(sysroot: Path, python: str, multiarch: str) -> Path:
    """The target's `_sysconfigdata__linux_<multiarch>.py` for CPython `python` in `sysroot`
    (e.g. `_sysconfigdata__linux_aarch64-linux-gnu`); a sysroot of another arch is an error."""
    libdir = sysroot / "usr" / "lib" / f"python{python}"
    found = sorted(libdir.glob("_sysconfigdata_*.py")) + sorted(libdir.glob("*/_sysconfigdata_*.py"))
    if not found:
        raise ToolchainError(f"{libdir}: no _sysconfigdata_*.py; is python{python} in the sysroot?")
    want = f"_sysconfigdata__linux_{multiarch}.py"
    exact = [p for p in found if p.name == want]
    if exact:
        return exact[0]
    other = [p.name for p in found if "__linux_" in p.name]
    if other:
        raise ToolchainError(f"{libdir}: the sysroot's CPython is built for another architecture "
                             f"({', '.join(other)}), the target needs {want}")
    # Only a legacy, unqualified name (an old or unusual build): take the shortest.
    return min(found, key=lambda p: len(p.name))


def write_sysconfigdata(sysroot: Path, python: str, dest: Path, multiarch: str) -> str:
    """Copy the target's sysconfigdata into `dest` with its paths moved into the sysroot.

    Returns the module name to put in `_PYTHON_SYSCONFIGDATA_NAME`.
    """
    src = find_sysconfigdata(sysroot, python, multiarch)
    text = _ABS_PATH.sub(lambda m: m.group("lead") + str(sysroot) + m.group("path"), src.read_text())
    atomic_write(dest / src.name, text)
    shutil.rmtree(dest / "__pycache__", ignore_errors=True)  # bytecode of an earlier copy
    return src.stem


def sysconfigdata_moved(sysroot: Path, dest: Path) -> bool:
    """True when the copy in `dest` names a sysroot elsewhere: the cache was moved or copied
    (the copy is derived data; write_sysconfigdata makes it again for here)."""
    here = re.compile(r"""(?:^|[\s'"=]|-I|-L)""" + re.escape(str(sysroot)) + "/usr/(?:include|lib|local/)")
    return not any(here.search(f.read_text()) for f in dest.glob("_sysconfigdata_*.py"))


def sysconfigdata_name(toolchain: CrossToolchain) -> str:
    found = sorted(toolchain.sysconfig_dir().glob("_sysconfigdata_*.py"))
    if not found:
        raise ToolchainError(f"{toolchain.sysconfig_dir()}: no sysconfigdata; run toolchain setup again")
    return found[0].stem


# Read by every autoconf `./configure` (CONFIG_SITE) after its options and before its compiler
# checks. A bundled library's configure that a setup.py runs without --host (uvloop's libuv,
# gevent's libev and c-ares, PyNaCl's libsodium) would otherwise take the build machine for the
# host, try to run what the cross compiler made and stop: "cannot run C compiled programs".
_CONFIG_SITE = """# ot2wheels: every autoconf configure of this build is a cross build for {triplet}
test -n "$host_alias" || host_alias={triplet}
cross_compiling=yes
"""


def write_config_site(dest: Path, triplet: str) -> Path:
    """The CONFIG_SITE file at `dest` that makes autoconf configure scripts cross compile for `triplet`."""
    atomic_write(dest, _CONFIG_SITE.format(triplet=triplet))
    return dest


def cross_environment(toolchain: CrossToolchain) -> dict[str, str]:
    target = toolchain.target
    sysroot = toolchain.sysroot
    tools = toolchain.compilers()
    libdirs = [d for d in toolchain.library_dirs if d.is_dir()]
    link = " ".join(f"-L{d} -Wl,-rpath-link,{d}" for d in libdirs)
    py_include = sysroot / "usr" / "include" / f"python{target.python}"
    env = {
        **tools,
        "PYTHONPATH": str(toolchain.sysconfig_dir()),
        "_PYTHON_SYSCONFIGDATA_NAME": sysconfigdata_name(toolchain),
        "_PYTHON_HOST_PLATFORM": target.platform.replace("_", "-", 1),
        "LDSHARED": f"{tools['CC']} -shared",
        "LDCXXSHARED": f"{tools['CXX']} -shared",
        # CPPFLAGS, not CFLAGS: CFLAGS would replace the target's -O2 -DNDEBUG.
        "CPPFLAGS": f"-I{py_include}",
        "LDFLAGS": link,
        "PKG_CONFIG_SYSROOT_DIR": str(sysroot),
        "PKG_CONFIG_LIBDIR": ":".join(
            str(d / "pkgconfig") for d in (*libdirs, sysroot / "usr" / "share")
        ),
        "PKG_CONFIG_PATH": "",
        "MAKEFLAGS": f"-j{os.cpu_count() or 1}",
    }
    return env
