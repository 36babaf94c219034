"""Leftovers of interrupted runs in the cache, removed by the next run.

A run killed mid-build leaves its work dir under `<cache>/work/`, and one killed mid-assembly
a hidden temporary tree (`.<final name>.<random>[.tmp]`) beside the sysroots, build Pythons
or build envs.
Each is removed only when it is older than the current run and no live process holds its
lock: a build holds a lock on its own work dir, an assembler the named cache lock of the
tree it makes, so concurrent runs never lose a tree in use.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from . import locks

WORK_MARK = ".locked-while-in-use"  # in a build's work dir: its lock tells whether it is live
LEGACY_AGE_S = 24 * 3600
# mkdtemp(prefix=".<final>.") names: the final name, then 8 random characters
_TMP_TREE = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}(?:\.tmp)?$")
# the trees assembled under a named cache lock, by the lock's prefix
_LOCKED_TREES = {"sysroots": "sysroot-", "buildenvs": "buildenv-", "pythons": "python-"}


def sweep(cache: Path, before: float, say: Callable[[str], None] | None = None) -> list[Path]:
    """Remove stale work dirs and half-made trees last changed before `before` (a time.time())."""
    stale = []
    work = cache / "work"
    for d in sorted(work.iterdir()) if work.is_dir() else []:
        if not d.is_dir() or d.is_symlink() or not locks.is_free(d):
            continue
        # a work dir made before builds locked them may still be in use: only a day-old one goes
        oldest = before if (d / WORK_MARK).exists() else before - LEGACY_AGE_S
        if d.stat().st_mtime < oldest:
            stale.append(d)
    for sub, prefix in _LOCKED_TREES.items():
        base = cache / sub
        for d in sorted(base.glob(".*")) if base.is_dir() else []:
            m = _TMP_TREE.match(d.name)
            if (m and d.is_dir() and not d.is_symlink() and d.stat().st_mtime < before
                    and locks.is_free(locks.lock_path(cache, prefix + m.group("final")))):
                stale.append(d)
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)
    if stale and say:
        say(f"removed {len(stale)} leftover(s) of interrupted runs from {cache}: "
            + ", ".join(str(d.relative_to(cache)) for d in stale))
    return stale
