"""Find a host CPython of the target's major.minor: the build Python must match the target."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from .errors import ToolchainError
from .fsutil import scrubbed_env


def full_version(python: Path) -> str | None:
    """'3.11.2' when `python` is a CPython that runs, else None."""
    try:
        st = python.stat()
    except OSError:
        return None
    return _probe(str(python), st.st_mtime_ns, st.st_ino, os.environ.get("PYENV_VERSION", ""))


@functools.lru_cache(maxsize=256)
def _probe(python: str, *stamp: object) -> str | None:
    # Memoized per process on the file's identity: every build asks for its toolchain's build
    # Python, and a pyenv shim takes ~0.2 s to answer; a run probes each one once.
    try:
        out = subprocess.run(
            [python, "-c", "import sys, platform; assert platform.python_implementation() == 'CPython'; "
             "print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True, text=True, timeout=30, env=scrubbed_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def candidates(version: str) -> list[Path]:
    """Places a CPython X.Y may live: PATH in order, then pyenv's versions, newest patch first.

    pyenv's shims directory on PATH stands for pyenv's versions at that place: a shim would
    only lead there, slowly (through bash, on every call).
    """
    root = pyenv_root()

    def pyenv_versions() -> list[Path]:
        versions = root / "versions"
        if not versions.is_dir():
            return []

        def patch_key(p: Path) -> int:
            tail = p.name.split(".")[2:3]
            return int(tail[0]) if tail and tail[0].isdigit() else -1

        dirs = sorted(versions.glob(f"{version}.*"), key=patch_key, reverse=True)
        return [d / "bin" / f"python{version}" for d in dirs if (d / "bin" / f"python{version}").exists()]

    found: list[Path] = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry:
            continue
        if Path(entry) == root / "shims":
            found += pyenv_versions()
        elif (exe := Path(entry) / f"python{version}").is_file() and os.access(exe, os.X_OK):
            found.append(exe)
    found += pyenv_versions()
    return list(dict.fromkeys(found))


def find_host(version: str) -> tuple[Path, str] | None:
    """The first working host CPython X.Y (PATH, then pyenv) and its full version."""
    for python in candidates(version):
        full = full_version(python)
        if full and full.rsplit(".", 1)[0] == version:
            return python, full
    return None


def find_python(version: str) -> Path:
    """A working host `python{version}`, or a ToolchainError saying how to get one."""
    if found := find_host(version):
        return found[0]
    raise ToolchainError(
        f"no host CPython {version} found (looked for python{version} on PATH and in pyenv).\n"
        f"  The build Python must have the target's version {version}. Install one, e.g.\n"
        f"  `pyenv install {version}` or your distribution's python{version} package."
    )
