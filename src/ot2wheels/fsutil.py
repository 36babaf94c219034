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
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
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


@contextmanager
def _replacing(path: Path, mode: int, doing: str) -> Iterator[BinaryIO]:
    """A file to fill; on success it is fsynced and renamed over `path`, on any error removed
    (an OSError becomes a one-line DiskError naming `path`)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    with _replacing(Path(dest), mode, f"copying {src} to") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


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
        shutil.rmtree(tmp, ignore_errors=True)
