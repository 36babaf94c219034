"""Find a host CPython of the target's major.minor: the build Python must match the target."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import ToolchainError


def _version_of(python: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def candidates(version: str) -> list[Path]:
    """Places a CPython X.Y may live: PATH, then pyenv's versions, newest patch first."""
    found: list[Path] = []
    if exe := shutil.which(f"python{version}"):
        found.append(Path(exe))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    versions = pyenv_root / "versions"
    if versions.is_dir():
        def patch_key(p: Path) -> int:
            tail = p.name.split(".")[2:3]
            return int(tail[0]) if tail and tail[0].isdigit() else -1

        for d in sorted(versions.glob(f"{version}.*"), key=patch_key, reverse=True):
            exe_path = d / "bin" / f"python{version}"
            if exe_path.exists():
                found.append(exe_path)
    return found


def find_python(version: str) -> Path:
    """A working host `python{version}`, or a ToolchainError saying how to get one."""
    for python in candidates(version):
        if _version_of(python) == version:
            return python
    raise ToolchainError(
        f"no host CPython {version} found (looked for python{version} on PATH and in pyenv).\n"
        f"  The build Python must have the target's version {version}. Install one, e.g.\n"
        f"  `pyenv install {version}` or your distribution's python{version} package."
    )
