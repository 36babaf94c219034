"""Exclusive locks on shared state (sysroots, apt state, build envs, sources, dist records).

`flock(2)` locks belong to an open file description, so they exclude other processes *and*
other threads of this process (each acquisition opens the lock file anew). A thread that
already holds a lock may take it again (nested steps), which just passes through.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_held = threading.local()  # names of the locks the current thread holds (re-entrancy only)


def lock_path(cache: Path, name: str) -> Path:
    """cache/locks/<readable name>-<hash>.lock (the hash keeps distinct long names distinct)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return cache / "locks" / f"{safe}-{digest}.lock"


def host_lock_path(name: str) -> Path:
    """A machine-wide lock for host state that is not ours (the host's apt/dpkg)."""
    return Path(tempfile.gettempdir()) / f"ot2wheels-{name}.lock"


@contextmanager
def locked(path: Path, what: str = "", say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the `with` body."""
    held: set[str] = _held.__dict__.setdefault("names", set())
    key = str(path)
    if key in held:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if say:
                say(f"waiting for {what or path.name} (another build holds it)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def cache_lock(cache: Path, name: str, say: Callable[[str], None] | None = None):
    """`locked()` on the named lock under the cache directory."""
    return locked(lock_path(cache, name), name, say)


def hold(path: Path) -> int:
    """Lock the existing file or directory `path` itself; the lock lasts until the returned
    descriptor is closed (or the process dies)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_free(path: Path) -> bool:
    """True when nobody (no live process, no other thread) holds a lock on `path` now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the probe's lock
