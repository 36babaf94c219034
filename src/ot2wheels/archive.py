"""Unpack tar and zip archives without letting any member land outside the destination.

Every member is checked before anything is written, against the archive's own member table
and never the disk (absolute paths, `..` above the top, members whose path passes through a
symlink member, symlinks that resolve outside by the table, hard links to anything but an
earlier regular file, device files are refused with UnsafeArchiveError naming the member).
Only then is the archive extracted into a temporary sibling of `dest` with tarfile's `data`
filter as a second layer (which re-checks against the disk, but is bypassable on CPython
before 3.11.13/3.12.11/3.13.4: CVE-2025-4517), and renamed into place. A failed extraction
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


def _parts(name: str) -> list[str]:
    """A member name as path components: `.` and empty components dropped, `..` kept."""
    return [p for p in name.split("/") if p not in ("", ".")]


def _lexical(parts: list[str]) -> tuple[str, ...] | None:
    """`..` applied to the components before it; None when it climbs above the top."""
    out: list[str] = []
    for p in parts:
        if p != "..":
            out.append(p)
        elif not out:
            return None
        else:
            out.pop()
    return tuple(out)


class _Table:
    """The archive's own member table: where each member lands, decided without the disk.

    A member's path may not pass through a symlink member (so the names are the final paths,
    and `..` in them is plain arithmetic); a symlink's target is followed through the other
    symlink members of the table (any depth, no PATH_MAX); hard links must name an earlier
    regular file. Nothing here asks the file system, so nothing here can be fooled by it
    (CVE-2025-4517 fooled `os.path.realpath` with paths longer than PATH_MAX).
    """

    MAX_HOPS = 40  # like the kernel's symlink limit

    def __init__(self, members: list[tarfile.TarInfo]) -> None:
        self.symlinks: dict[tuple[str, ...], str] = {}
        for m in members:
            if m.issym() and (where := _lexical(_parts(m.name))) is not None:
                self.symlinks[where] = m.linkname

    def _through_symlink(self, parts: list[str]) -> str | None:
        """The first leading part of the name that is a symlink member, if any."""
        if not self.symlinks:
            return None
        prefix: list[str] = []
        for i, p in enumerate(parts[:-1]):
            if p != "..":
                prefix.append(p)
            elif prefix:
                prefix.pop()
            if tuple(prefix) in self.symlinks:
                return "/".join(parts[: i + 1])
        return None

    def place(self, name: str) -> tuple[str, ...] | str:
        """The member's path inside the destination, or why it has none."""
        if name.startswith(("/", "\\")):
            return "absolute path"
        parts = _parts(name)
        if link := self._through_symlink(parts):
            return f"its path passes through the symlink member {link!r}"
        where = _lexical(parts)
        return "path leaves the destination ('..')" if where is None else where

    def resolve(self, start: tuple[str, ...], linkname: str) -> tuple[str, ...] | None:
        """Where `linkname` (relative to directory `start`) ends up, following symlink
        members of the table; None when it leaves the destination or loops."""
        if linkname.startswith("/"):
            return None
        todo = _parts(linkname)
        here = list(start)
        hops = 0
        while todo:
            p = todo.pop(0)
            if p == "..":
                if not here:
                    return None
                here.pop()
                continue
            here.append(p)
            target = self.symlinks.get(tuple(here))
            if target is not None:
                hops += 1
                if hops > self.MAX_HOPS or target.startswith("/"):
                    return None
                here.pop()
                todo = _parts(target) + todo
        return tuple(here)


def _table_check(members: list[tarfile.TarInfo]) -> tuple[tarfile.TarInfo, str] | None:
    """The first member the table refuses, with why; None when every member stays inside."""
    table = _Table(members)
    seen: dict[tuple[str, ...], tarfile.TarInfo] = {}
    for m in members:
        place = table.place(m.name)
        if isinstance(place, str):
            return m, place
        if not place and not m.isdir():
            return m, "the member names the destination directory itself"
        if m.ischr() or m.isblk() or m.isfifo():
            return m, "device or pipe"
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            return m, "unsupported member type"
        earlier = seen.get(place)
        if earlier is not None and (m.issym() or earlier.issym() or m.islnk() or earlier.islnk()):
            return m, "the name appears twice in the archive, once as a link"
        if m.issym():
            if m.linkname.startswith("/"):
                return m, f"symlink to an absolute path {m.linkname!r}"
            if table.resolve(place[:-1], m.linkname) is None:
                return m, f"symlink {m.linkname!r} points outside the destination (or loops)"
        if m.islnk():
            target = table.place(m.linkname)
            if isinstance(target, str) or m.linkname.startswith("/"):
                return m, f"hard link {m.linkname!r} points outside the destination"
            first = seen.get(target)
            if first is None or not first.isreg():
                return m, f"hard link {m.linkname!r} does not name an earlier regular file"
        seen[place] = m
    return None


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
            if refused := _table_check(members):
                raise _refuse(archive, refused[0].name, refused[1])
            # second layer: the data filter's (or our own) checks against the disk
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
