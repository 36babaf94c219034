"""Atomic replacement of a whole directory tree, and recovery after a crash.

A new tree is built in `.<name>.building-<pid>` beside the final directory (same filesystem),
then exchanged with the final one in a single `renameat2(RENAME_EXCHANGE)` call on Linux.
Where that call is missing, two renames are used; a crash between them leaves the old tree
as `.<name>.old-<pid>`, which `recover()` puts back before the next build. After a swap the
previous tree is kept as `.<name>.spare`: the next build updates it in place (it is never
served) and swaps it in, so a build touches only what changed.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from ..fsutil import remove_tree
from .quick import leftovers

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@cache
def _libc_renameat2():  # pragma: no cover - platform probe
    # Probed on the first swap, not on import: a no-op build never swaps.
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths. False if the system cannot (then nothing changed)."""
    renameat2 = _libc_renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: filesystem or kernel cannot exchange
        return False
    raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


def building_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.building-{os.getpid()}"


def staging_dir(final: Path) -> Path:
    """Where an in-place update of `final` keeps its temp files until it renames them in."""
    return final.parent / f".{final.name}.staging-{os.getpid()}"


def spare_dir(final: Path) -> Path:
    """The previous generation of `final`, kept to be brought up to date by the next build."""
    return final.parent / f".{final.name}.spare"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_in(new: Path, final: Path) -> None:
    """Make `new` appear at `final` in one step. The previous tree becomes the spare."""
    spare = spare_dir(final)
    if not final.exists():
        os.rename(new, final)
    elif exchange(new, final):
        if new != spare:  # `new` now holds the previous tree
            if spare.exists():
                remove_tree(spare)
            os.rename(new, spare)
    else:
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.rename(final, old)
        os.rename(new, final)
        if spare.exists():
            remove_tree(spare)
        os.rename(old, spare)
    _fsync_dir(final.parent)


def recover(final: Path) -> list[Path]:
    """Undo what a crashed build left beside `final`. Call with the lock held. Returns removed paths."""
    parent = final.parent
    if not leftovers(str(final)):  # one listing; the common case
        return []
    olds = sorted(parent.glob(f".{final.name}.old-*"))
    if not final.exists() and olds:
        os.rename(olds[-1], final)  # a crash between the two renames: put the old tree back
        olds = olds[:-1]
    removed = []
    for leftover in [*olds, *sorted(parent.glob(f".{final.name}.building-*")),
                     *sorted(parent.glob(f".{final.name}.staging-*"))]:
        remove_tree(leftover, ignore_errors=True)
        removed.append(leftover)
    return removed


@contextmanager
def locked(final: Path) -> Iterator[None]:
    """One build at a time per index directory (an flock on `.<name>.lock` beside it)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
