"""Unpack tar and zip archives without letting any member land outside the destination.

Every member is checked before anything is written (absolute paths, `..`, links pointing
outside, device files are refused with UnsafeArchiveError naming the member), then the
archive is extracted into a temporary sibling of `dest` with tarfile's `data` filter (which
re-checks against what is already on disk) and renamed into place. A failed extraction
leaves nothing at `dest`.
"""

from __future__ import annotations

import copy
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .errors import UnsafeArchiveError

# tarfile's extraction filters arrived in CPython 3.11.4 (and 3.12); Debian bookworm ships
# 3.11.2. Where they are missing, the same rules are applied here member by member.
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


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


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _why_unsafe(m: tarfile.TarInfo, root: str) -> str | None:
    """The data filter's rules, checked against what is on disk now (symlinks followed)."""
    if m.name.startswith(("/", "\\")):
        return "absolute path"
    target = os.path.realpath(os.path.join(root, m.name))
    if not _inside(target, root):
        return "path leaves the destination"
    if m.ischr() or m.isblk() or m.isfifo():
        return "device or pipe"
    if m.issym():
        if m.linkname.startswith("/"):
            return f"symlink to an absolute path {m.linkname!r}"
        dest = os.path.realpath(os.path.join(os.path.dirname(target), m.linkname))
        if not _inside(dest, root):
            return f"symlink {m.linkname!r} points outside the destination"
    if m.islnk():
        dest = os.path.realpath(os.path.join(root, m.linkname))
        if m.linkname.startswith("/") or not _inside(dest, root):
            return f"hard link {m.linkname!r} points outside the destination"
    return None


def _sanitised(m: tarfile.TarInfo) -> tarfile.TarInfo:
    """What the data filter does to metadata: no owners from the archive, no setuid/sticky,
    no group/other write bits."""
    m = copy.copy(m)
    m.uid, m.gid, m.uname, m.gname = os.getuid(), os.getgid(), "", ""
    if m.mode is not None and not m.issym():
        m.mode &= 0o755
    return m


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            root = os.path.realpath(dest)
            for m in members:
                why = _why_unsafe(m, root)
                if why is None and HAS_DATA_FILTER:
                    try:
                        tarfile.data_filter(m, root)
                    except tarfile.FilterError as exc:
                        why = str(exc)
                if why:
                    raise _refuse(archive, m.name, why)
            if HAS_DATA_FILTER:
                try:
                    tf.extractall(dest, members=members, filter="data")
                except tarfile.FilterError as exc:
                    name = exc.tarinfo.name if getattr(exc, "tarinfo", None) else "?"
                    raise _refuse(archive, name, str(exc)) from None
                return
            for m in members:
                # re-checked against the disk: an earlier member may be a symlink on the way
                if why := _why_unsafe(m, root):
                    raise _refuse(archive, m.name, why)
                tf.extract(_sanitised(m), dest, set_attrs=True)
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
