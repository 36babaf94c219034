"""Build environments: a venv of the host CPython X.Y with a recipe's pinned build requirements.

Builds run without isolation inside it, because an isolated environment would lose the
target's sysconfigdata. Environments are cached by (python, requirements) and made atomically.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import locks
from .errors import BuildError

# The PEP 517 frontend run inside each build environment (supports CPython 3.8+).
FRONTEND = "build==1.2.2.post1"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "_PYTHON", "VIRTUAL_ENV"))}


def ensure_build_env(python: Path, requires: tuple[str, ...], cache: Path, log: Path | None = None) -> Path:
    """The python executable of a venv holding `requires` (+ the frontend), made once."""
    reqs = sorted({FRONTEND, *requires})
    key = hashlib.sha256("\n".join([str(python.resolve()), *reqs]).encode()).hexdigest()[:16]
    version = python.name.removeprefix("python")
    root = cache / "buildenvs" / f"py{version}-{key}"
    exe = root / "bin" / "python"
    if (root / ".complete").is_file():
        return exe
    with locks.cache_lock(cache, f"buildenv-{root.name}"):  # one creator; the others reuse it
        if not (root / ".complete").is_file():
            _create(python, reqs, root, version, requires, log)
    return exe


def _create(python: Path, reqs: list[str], root: Path, version: str, requires: tuple[str, ...],
            log: Path | None) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        out = subprocess.run([str(python), "-m", "venv", str(tmp)], capture_output=True, text=True, env=_clean_env())
        if out.returncode != 0:
            raise BuildError(f"cannot create a venv with {python}: {out.stderr.strip()}")
        cmd = [str(tmp / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
               "--no-input", *reqs]
        out = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env())
        if log:
            with log.open("a") as f:
                f.write(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}\n")
        if out.returncode != 0:
            raise BuildError(
                f"cannot install build requirements {' '.join(requires)} for python{version}:\n"
                f"{out.stderr.strip()[-1500:]}\n  check the pins in the recipe's [build] requires"
            )
        _relocate_scripts(tmp, root)
        (tmp / ".complete").write_text("\n".join(reqs) + "\n")
        try:
            tmp.rename(root)
        except OSError:
            if not (root / ".complete").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _relocate_scripts(tmp: Path, root: Path) -> None:
    """Point the venv's console scripts (cython, ninja, ...) at their final home before the rename.

    pip writes the interpreter's path into each script's #! line; the venv is made in `tmp`.
    """
    old, new = f"#!{tmp}/".encode(), f"#!{root}/".encode()
    for script in (tmp / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if data.startswith(old):
                script.write_bytes(new + data[len(old):])
