"""Build environments: a venv of the host CPython X.Y with a recipe's pinned build requirements.

Builds run without isolation inside it, because an isolated environment would lose the
target's sysconfigdata. Environments are cached by (python, requirements), made in place under
a lock (their scripts name their path) and marked complete last. One made at another path
(a moved or copied cache) is made again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from . import locks
from .errors import BuildError
from .fsutil import atomic_write, scrubbed_env

# The PEP 517 frontend run inside each build environment (supports CPython 3.8+).
FRONTEND = "build==1.2.2.post1"


def _clean_env() -> dict[str, str]:
    return scrubbed_env()


def ensure_build_env(python: Path, requires: tuple[str, ...], cache: Path, log: Path | None = None) -> Path:
    """The python executable of a venv holding `requires` (+ the frontend), made once."""
    reqs = sorted({FRONTEND, *requires})
    key = hashlib.sha256("\n".join([str(python.resolve()), *reqs]).encode()).hexdigest()[:16]
    version = python.name.removeprefix("python")
    root = cache / "buildenvs" / f"py{version}-{key}"
    exe = root / "bin" / "python"
    if (root / ".complete").is_file() and not _moved(root):
        return exe
    with locks.cache_lock(cache, f"buildenv-{root.name}"):  # one creator; the others reuse it
        if (root / ".complete").is_file() and (made_at := _moved(root)):
            # scripts in a venv name its absolute path: a moved or copied cache needs a new one
            _note(log, f"build env {root} was made at {made_at} (the cache was moved or copied); "
                       "making it again here")
            shutil.rmtree(root)
        if not (root / ".complete").is_file():
            _create(python, reqs, root, version, requires, cache, log)
    return exe


def venv_root(python: Path) -> Path:
    """The root (sys.prefix) of the build venv whose interpreter `ensure_build_env` returned."""
    return python.parent.parent  # <root>/bin/python


MADE_AT = ".made-at"  # the path a build env was made at (its scripts name it)


def _moved(root: Path) -> str | None:
    """The other path `root` was made at, or None (same place, or made before this was recorded)."""
    try:
        made_at = (root / MADE_AT).read_text().strip()
    except FileNotFoundError:
        return None
    return made_at if made_at != str(root) else None


def _note(log: Path | None, message: str) -> None:
    if log:
        with log.open("a") as f:
            f.write(f"# {message}\n")


def _create(python: Path, reqs: list[str], root: Path, version: str, requires: tuple[str, ...],
            cache: Path, log: Path | None) -> None:
    """Make the venv in place (under its lock), so its scripts name where it stays; `.complete`
    is written last, and readers use nothing without it."""
    root.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)  # what an interrupted creation left
    try:
        # virtualenv, run by our own interpreter, rather than `python -m venv`: Debian's CPythons
        # (the system's without python3.X-venv, and those unpacked from a suite's .debs) have no
        # ensurepip, and virtualenv seeds pip from wheels it embeds, without network. (`uv venv
        # --seed` would fetch pip from the network and ignores pip's configured index.)
        cmd = [sys.executable, "-m", "virtualenv", "--python", str(python), "--no-setuptools",
               "--no-periodic-update", "--app-data", str(cache / "virtualenv"), str(root)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env())
        if out.returncode != 0:
            raise BuildError(f"cannot create a virtualenv with {python}: "
                             f"{(out.stderr or out.stdout).strip()[-1500:]}")
        cmd = [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
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
        atomic_write(root / MADE_AT, f"{root}\n")
        atomic_write(root / ".complete", "\n".join(reqs) + "\n")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
