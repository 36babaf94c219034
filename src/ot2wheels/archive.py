"""Unpack tar and zip archives without letting any member land outside the destination.

Every member is checked before anything is written (absolute paths, `..`, links pointing
outside, device files are refused with UnsafeArchiveError naming the member), then the
archive is extracted into a temporary sibling of `dest` with tarfile's `data` filter (which
re-checks against what is already on disk) and renamed into place. A failed extraction
leaves nothing at `dest`.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .errors import UnsafeArchiveError


def extract(archive: Path, dest: Path) -> Path:
    """Extract `archive` (tar, tar.gz/bz2/xz, or zip) into the new directory `dest`."""
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise UnsafeArchiveError(
            f"{dest} already exists; extract() only creates new directories. Remove it first."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        if tarfile.is_tarfile(archive):
            _extract_tar(archive, tmp)
        elif zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        else:
            raise UnsafeArchiveError(f"{archive}: not a tar or zip archive (or a damaged one)")
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _refuse(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: refusing to extract member {member!r}: {why}. Nothing was extracted; "
        "the archive is damaged or hostile, get it from a trusted source."
    )


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            root = os.path.realpath(dest)
            for m in members:
                if m.name.startswith(("/", "\\")):
                    raise _refuse(archive, m.name, "absolute path")
                try:
                    tarfile.data_filter(m, root)
                except tarfile.FilterError as exc:
                    raise _refuse(archive, m.name, str(exc)) from None
            try:
                tf.extractall(dest, members=members, filter="data")
            except tarfile.FilterError as exc:
                name = exc.tarinfo.name if getattr(exc, "tarinfo", None) else "?"
                raise _refuse(archive, name, str(exc)) from None
    except (tarfile.ReadError, EOFError) as exc:
        raise UnsafeArchiveError(
            f"{archive}: cannot read the archive ({exc}); it is truncated or damaged. "
            "Download it again."
        ) from None


def _extract_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                name = info.filename
                p = PurePosixPath(name.replace("\\", "/"))
                if p.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
                    raise _refuse(archive, name, "absolute path")
                if ".." in p.parts:
                    raise _refuse(archive, name, "path leaves the destination ('..')")
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise _refuse(archive, name, "symbolic link in a zip archive")
            bad = zf.testzip()
            if bad is not None:
                raise UnsafeArchiveError(f"{archive}: member {bad!r} fails its CRC check; download again")
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise UnsafeArchiveError(f"{archive}: damaged zip archive ({exc}); download it again") from None
