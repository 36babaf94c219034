"""Compiler cache: ccache wrapped around the cross CC/CXX, one store under the cache directory.

Every build extracts its source into a fresh temporary directory, so for a rebuild to hit:
- CCACHE_BASEDIR is that build's work directory: absolute paths under it (in -I options and
  file names) are hashed relative to the compiler's working directory, the same every time;
- CCACHE_NOHASHDIR: the working directory is not hashed even though the target's CFLAGS have
  -g (debug info then names the first build's directory, which is gone anyway).
The compilers' own identity is part of the hash (CCACHE_COMPILERCHECK=content), so a new
cross gcc never reuses objects of the old one. Linking (LDSHARED) is not wrapped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import hosttools
from .errors import ToolchainError
from .hosttools import HostTool

TOOL = HostTool("ccache", "ccache")
MAX_SIZE = "5G"


def available(note=print) -> bool:
    """ccache on PATH, installed through apt if we may; a build without it is only slower."""
    try:
        hosttools.ensure([TOOL], log=note)
        return True
    except ToolchainError as exc:
        note(f"building without ccache: {str(exc).splitlines()[0]}")
        return False


def ccache_dir(cache: Path) -> Path:
    return cache / "ccache"


def environment(env: dict[str, str], cache: Path, basedir: Path) -> dict[str, str]:
    """`env` with CC/CXX run through ccache and the variables that make temp trees hit."""
    out = dict(env)
    for var in ("CC", "CXX"):
        if var in out and not out[var].startswith("ccache "):
            out[var] = f"ccache {out[var]}"
    out.update({
        "CCACHE_DIR": str(ccache_dir(cache)),
        "CCACHE_BASEDIR": str(basedir),
        "CCACHE_NOHASHDIR": "1",
        "CCACHE_COMPILERCHECK": "content",
        "CCACHE_MAXSIZE": MAX_SIZE,
        "CCACHE_TEMPDIR": str(ccache_dir(cache) / "tmp"),
    })
    return out


def _ccache(cache: Path, *args: str) -> str:
    env = {**os.environ, "CCACHE_DIR": str(ccache_dir(cache))}
    try:
        out = subprocess.run(["ccache", *args], capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise ToolchainError("ccache is not installed: apt-get install ccache") from None
    if out.returncode != 0:
        raise ToolchainError(f"ccache {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def stats(cache: Path) -> dict[str, int]:
    """ccache's counters for our store (direct_cache_hit, preprocessed_cache_hit, cache_miss, ...)."""
    counters = {}
    for line in _ccache(cache, "--print-stats").splitlines():
        name, _, value = line.partition("\t")
        if value.strip().isdigit():
            counters[name] = int(value)
    return counters


def hits(counters: dict[str, int]) -> int:
    return counters.get("direct_cache_hit", 0) + counters.get("preprocessed_cache_hit", 0)


def zero_stats(cache: Path) -> None:
    _ccache(cache, "--zero-stats")
