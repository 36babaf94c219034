"""Whether an index build has anything to do, decided before the index code is imported.

A no-op build (nothing new in dist/) is the common case of `python -m ot2wheels.index`; its
cost is the interpreter's start plus what it imports. This module imports only os, json,
hashlib and fcntl (no packaging, pathlib, dataclasses or typing: together they cost several
times what the check itself does), so the no-op answers in a few hundredths of a second. Every
other case goes on to build.py, which reuses the fingerprint, the scan file reader and the
folder listing from here (one definition of each).

The check: under the build lock, no leftover of a crashed build beside the index, the scan
file's fingerprint matches (yank list, targets file, base URL, index code, packaging version),
the state file is the one the scan file belongs to (its sha256), and no dist/<target>/<project>/
folder's mtime moved since its scan (see incremental.py for why a folder's mtime is enough).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator

TYPE_CHECKING = False  # typing itself is not imported: this is on the fast path
if TYPE_CHECKING:
    from typing import TypeAlias

    # (a time taken before the listing, the dist folders as listed, and, when read under the same
    # lock: the scan file's stamp, its JSON, and the folders changed since it was written)
    Listed: TypeAlias = tuple[int, dict[str, int], tuple[tuple[int, int, int], dict, list[str]] | None]

# The modules whose code shapes the pages: a change to any of them means a full build.
CODE = ("render.py", "instructions.py", "model.py", "build.py", "scan.py", "full.py", "incremental.py",
        "quick.py", "../wheelname.py")
STATE_NAME = ".ot2wheels-index.json"
# A folder modified this close to its scan may change again within the file system's timestamp
# granularity without its mtime moving: what its scan saw is remembered in more detail.
RACY_NS = 2_000_000_000
_LEFTOVERS = (".old-", ".building-", ".staging-")  # what swap.recover() cleans up


def _read(path: str | None) -> bytes:
    try:
        if path is None:
            return b""
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def fingerprint(dist_dir: str, yanked_file: str | None, base_url: str | None, targets_file: str | None) -> str:
    """What the pages depend on besides the wheels: a change means a full build."""
    import packaging  # the tags a target accepts come from it (kept in the scan cache)

    here = os.path.dirname(__file__)
    code = hashlib.sha256(b"".join(_read(os.path.join(here, n)) for n in CODE)).hexdigest()
    parts = (os.path.abspath(dist_dir), _read(yanked_file), base_url, _read(targets_file), code, packaging.__version__)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def scan_cache_path(index_dir: str) -> str:
    head, name = os.path.split(os.path.abspath(index_dir))
    return os.path.join(head, f".{name}.scan.json")


def read_scan_doc(index_dir: str) -> tuple[dict | None, tuple[int, int, int] | None]:
    """The scan file as JSON (incremental.read_scan_cache checks its fields), None if unreadable,
    and its `scan_stamp`."""
    try:
        with open(scan_cache_path(index_dir), "rb") as f:
            stamp = _stamp(os.fstat(f.fileno()))
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return None, None
    return (doc, stamp) if isinstance(doc, dict) else (None, None)


def scan_stamp(index_dir: str) -> tuple[int, int, int] | None:
    """The scan file's inode, size and mtime: it is replaced by rename, never written in place, so
    a copy read earlier is current while its stamp is."""
    try:
        return _stamp(os.stat(scan_cache_path(index_dir)))
    except OSError:
        return None


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_state_bytes(index_dir: str) -> bytes | None:
    try:
        with open(os.path.join(index_dir, STATE_NAME), "rb") as f:
            return f.read()
    except OSError:
        return None


def dist_folders(dist_dir: str) -> dict[str, int]:
    """Every dist/<target>/<project>/ folder ("<target>/<project>") with its mtime in ns, in no
    particular order (a no-op need not sort thousands of names).

    A folder's mtime changes whenever a file is created, renamed into it or deleted, which is
    how ot2wheels writes wheels and records (atomically, by rename): an incremental index build
    rescans only folders whose mtime moved.
    """
    return dict(_folders(dist_dir, True))


def folder_names(dist_dir: str) -> list[str]:
    """dist_folders' folders without their mtimes, sorted (a full build's workers stat their own)."""
    return sorted(name for name, _m in _folders(dist_dir, False))


def _folders(dist_dir: str, stat: bool) -> Iterator[tuple[str, int]]:
    try:
        tops = sorted(e.name for e in os.scandir(dist_dir) if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        return
    for top in tops:
        # Listed through a descriptor: each stat then resolves one name, not the whole path
        # (half the time of a no-op build with thousands of folders).
        fd = os.open(os.path.join(dist_dir, top), os.O_RDONLY | os.O_DIRECTORY)
        try:
            for entry in os.scandir(fd):
                if entry.is_dir() and not entry.name.startswith("."):
                    yield f"{top}/{entry.name}", entry.stat().st_mtime_ns if stat else 0
        finally:
            os.close(fd)


def changed_folders(dist_dir: str, cached: dict[str, list], folders: dict[str, int]) -> list[str]:
    """The folders to rescan: new ones, ones whose mtime moved, and racy ones (see `seen`) whose
    entries differ from what their scan saw."""
    out = []
    for f, m in folders.items():
        old = cached.get(f)
        if old is None or old[0] != m or (len(old) > 2 and old[2] is not None and old[2] != listing(dist_dir, f)):
            out.append(f)
    return sorted(out)


def listing(dist_dir: str, folder: str) -> str:
    """A digest of a folder's entries: name, inode, size, mtime. ot2wheels writes dist/ by rename,
    so a new or replaced file shows as a new name or a new inode even when the folder's mtime
    did not move (a rename creates the new file before the old one goes: never the same inode)."""
    h = hashlib.sha256()
    try:
        with os.scandir(os.path.join(dist_dir, folder)) as it:
            for e in sorted(it, key=lambda e: e.name):
                st = e.stat(follow_symlinks=False)
                h.update(f"{e.name}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except (FileNotFoundError, NotADirectoryError):
        return ""
    return h.hexdigest()


def seen(dist_dir: str, folder: str, mtime_ns: int) -> str | None:
    """What to remember of a folder besides its mtime (as listed before), taken right BEFORE the
    folder is scanned (so it never covers a file the scan missed): its `listing` when the folder
    was modified within RACY_NS of now (a later change may not move its mtime), else None: any
    change after this moment moves the mtime away from `mtime_ns`."""
    return listing(dist_dir, folder) if mtime_ns >= now_ns() - RACY_NS else None


def settled(cached: dict[str, list], folders: dict[str, int], changed: list[str], listed_at: int) -> list[str]:
    """Folders remembered by listing that can now be remembered by mtime alone: unchanged (their
    listing matched, checked after `listed_at`) and modified over RACY_NS before `listed_at`."""
    skip = set(changed)
    return [f for f, m in folders.items() if f not in skip and f in cached and len(cached[f]) > 2
            and cached[f][2] is not None and m < listed_at - RACY_NS]


def now_ns() -> int:
    return time.time_ns()


def leftovers(index_dir: str) -> bool:
    """Whether a crashed build left something beside the index (swap.recover() must run)."""
    head, name = os.path.split(os.path.abspath(index_dir))
    try:
        names = os.listdir(head)
    except FileNotFoundError:
        return False
    return any(n.startswith(f".{name}{kind}") for n in names for kind in _LEFTOVERS)


def lock(index_dir: str) -> Callable[[], None]:
    """Take the build lock (swap.locked's: an flock on `.<name>.lock` beside the index);
    returns its release."""
    import fcntl

    head, name = os.path.split(os.path.abspath(index_dir))
    os.makedirs(head, exist_ok=True)
    fd = os.open(os.path.join(head, f".{name}.lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)

    def release() -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return release


def probe(dist_dir: str, index_dir: str, fp: str) -> tuple[dict | None, Listed | None]:
    """(the scan file's contents when nothing is new since it was written, else None; what was
    listed and read, or None if not listed). Call with the lock held. What was listed and read
    saves build.py listing the folders and reading the scan file again."""
    doc, stamp = read_scan_doc(index_dir)
    if doc is None or doc.get("fingerprint") != fp or not os.path.isdir(index_dir) or leftovers(index_dir):
        return None, None
    raw = read_state_bytes(index_dir)
    cached = doc.get("folders")
    if raw is None or hashlib.sha256(raw).hexdigest() != doc.get("tree") or not isinstance(cached, dict):
        return None, None
    scanned_at, folders = now_ns(), dist_folders(dist_dir)
    changed = changed_folders(dist_dir, cached, folders)
    if changed or not set(cached) <= set(folders):
        return None, (scanned_at, folders, (stamp, doc, changed) if stamp else None)
    return doc, (scanned_at, folders, None)
