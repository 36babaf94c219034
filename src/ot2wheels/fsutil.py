"""One place for the file-system habits: atomic writes and copies, scrubbed environments.

Every file the tool writes into dist/, index/, the cache or beside the ledger goes through
`atomic_write` / `atomic_copy`: a temp name in the destination's own directory, fsync, then
`os.replace`, so a reader (or a crash) sees the old file or the new one, never half of one.
An `OSError` while writing becomes a `DiskError` with one line naming the path (ENOSPC says
"disk full at PATH"), and the temp file is removed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import DiskError

# Variables of the interpreter that runs ot2wheels that must not leak into a child Python
# (another version, the target's CPython under qemu, a build venv).
PYTHON_VARS = ("PYTHON", "_PYTHON", "VIRTUAL_ENV")
PIP_VARS = ("PIP_",)


def scrubbed_env(drop: Iterable[str] = PYTHON_VARS, base: Mapping[str, str] | None = None,
                 **extra: str) -> dict[str, str]:
    """`base` (default: os.environ) without variables starting with any of `drop`, plus `extra`."""
    prefixes = tuple(drop)
    src = os.environ if base is None else base
    return {**{k: v for k, v in src.items() if not k.startswith(prefixes)}, **extra}


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def disk_error(exc: OSError, path: Path | str, doing: str = "writing") -> DiskError:
    """A one-line DiskError for `exc` raised while `doing` `path`."""
    if exc.errno == errno.ENOSPC:
        return DiskError(f"disk full at {path} while {doing}; free space there (or point "
                         "OT2WHEELS_CACHE / --dist elsewhere) and run again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DiskError(f"cannot write {path} ({exc.strerror}); check its permissions")
    return DiskError(f"{doing} {path} failed: {exc.strerror or exc}")


def _temp_beside(path: Path, folder: Path | None = None) -> tuple[int, str]:
    """A new, empty temp file for `path` (in `folder`, default its own folder), mode 0600: an
    open descriptor and its name. (Not tempfile.mkstemp: importing tempfile, with random and
    shutil, was a tenth of the imports of publishing one wheel.)"""
    where = folder or path.parent
    while True:
        tmp = f"{where}/.{path.name}.{os.urandom(6).hex()}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), tmp
        except FileExistsError:  # 48 random bits: only another writer's leftover
            continue


@contextmanager
def _replacing(path: Path, mode: int, doing: str) -> Iterator[BinaryIO]:
    """A file to fill; on success it is fsynced and renamed over `path`, on any error removed
    (an OSError becomes a one-line DiskError naming `path`)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_beside(path)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise disk_error(exc, path, doing) from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically (same-directory temp file, fsync, os.replace)."""
    with _replacing(Path(path), mode, "writing") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def atomic_copy(src: Path, dest: Path, mode: int = 0o644) -> None:
    """Copy `src` to `dest` atomically: across file systems too, `dest` is whole or absent."""
    with _replacing(Path(dest), mode, f"copying {src} to") as out:
        _pour(src, out)


def _pour(src: Path, out: BinaryIO) -> None:
    """The bytes of `src` written to `out` (shutil.copyfileobj, without importing shutil)."""
    with open(src, "rb") as inp:
        while chunk := inp.read(1 << 20):
            out.write(chunk)


def atomic_write_all(items: Sequence[tuple[Path, bytes | Path]], renamed: Callable[[Path], None] | None = None,
                     mode: int = 0o644, staging: Path | None = None) -> None:
    """Write several files atomically, as `atomic_write` does each, in one go.

    Every temp file is written first (a `bytes` item is written, a `Path` item copied from that
    file, keeping its modification time) and all are fsynced together (`_fsync_all`: on threads
    where an fsync waits for the journal, which then commits once for the lot, not once per file).
    Then each temp file is renamed over its path in the order given, so readers and a crash see a
    prefix of the renames, each file whole. `renamed` is called after each rename. `staging` (a
    folder on the same file system) holds the temp files instead of each destination's folder, so
    what a killed process leaves is in one place, not among the files it was replacing.
    """
    temps: list[tuple[str, Path]] = []
    path = Path(".")
    try:
        fds = []
        try:
            for path, data in items:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = _temp_beside(path, staging)
                temps.append((tmp, path))
                fds.append(fd)
                if isinstance(data, bytes):
                    with open(fd, "wb", closefd=False) as out:
                        out.write(data)
                else:
                    with open(fd, "wb", closefd=False) as out:
                        _pour(data, out)
                    st = os.stat(data)
                    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.fchmod(fd, mode)
            _fsync_all(fds)
        finally:
            for fd in fds:
                os.close(fd)
        while temps:
            tmp, path = temps[0]
            os.replace(tmp, path)
            temps.pop(0)
            if renamed:
                renamed(path)
    except OSError as exc:
        raise disk_error(exc, path, "writing") from exc
    finally:
        for tmp, _path in temps:
            Path(tmp).unlink(missing_ok=True)


def _fsync_all(fds: list[int]) -> None:
    """fsync every descriptor. On a journaling file system each fsync waits for a commit (~5 ms):
    concurrent ones share it, so the rest go on threads. When the first one returns at once (tmpfs,
    nothing to write), so would the rest: starting threads (~0.5 ms each) would cost more."""
    if not fds:
        return
    start = time.monotonic()
    os.fsync(fds[0])
    rest = fds[1:]
    if time.monotonic() - start < 0.001 or len(rest) < 2:
        for fd in rest:
            os.fsync(fd)
        return
    import threading

    errors: list[OSError] = []

    def sync(part: list[int]) -> None:
        try:
            for fd in part:
                os.fsync(fd)
        except OSError as exc:
            errors.append(exc)

    n = min(16, len(rest))
    threads = [threading.Thread(target=sync, args=(rest[i::n],)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def atomic_move(src: Path, dest: Path, mode: int = 0o644) -> None:
    """Move `src` to `dest`: a rename on one file system, else an atomic copy then unlink."""
    try:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        os.chmod(src, mode)
        os.replace(src, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise disk_error(exc, dest, f"moving {src} to") from exc
    atomic_copy(src, dest, mode)
    Path(src).unlink(missing_ok=True)


def rename_tree(tmp: Path, dest: Path, done: Path) -> None:
    """Rename the finished temp tree `tmp` (beside `dest`) to `dest`. When another process
    finished the same tree first (its `done` file exists), ours is dropped."""
    try:
        tmp.rename(dest)
    except OSError:
        if not done.is_file():
            raise
        remove_tree(tmp, ignore_errors=True)


def remove_tree(path: Path | str, ignore_errors: bool = False) -> None:
    """shutil.rmtree, imported when a tree is removed: publishing one wheel removes none."""
    import shutil

    shutil.rmtree(path, ignore_errors=ignore_errors)
