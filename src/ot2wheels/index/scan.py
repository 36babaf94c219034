"""What the full build (full.py) and an incremental publish (build.py) share: reading the dist
folders and their build records, reading and checking wheels, admitting them, and the result a
build reports.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from packaging.version import InvalidVersion

from ..errors import IndexBuildError
from ..fsutil import sha256_file
from ..wheelname import BadWheelName, canonical_name, parse_version, parse_wheel_filename
from .model import Failure, WheelEntry, upload_time, version_text

if TYPE_CHECKING:
    from ..targets import Target


class IndexResult(NamedTuple):
    """What a build did, for the summary it prints (cli.print_result)."""

    index_dir: Path
    targets: tuple[str, ...]
    projects: int  # across all targets
    wheels: int  # published after this build
    added: tuple[str, ...]  # "<target>/<wheel>" newly published
    removed: tuple[str, ...]  # "<target>/<wheel>" removed on request
    skipped: tuple[str, ...]  # dist wheels not published, with the reason
    rewritten: tuple[str, ...]  # pages written anew (relative paths); unchanged ones are linked
    unused_yanks: tuple[str, ...]  # yank rules that match no published wheel
    changed: bool  # False: nothing differed, the index was left untouched
    seconds: float


class _New(NamedTuple):
    """A dist wheel admitted to the index: its entry, its file in dist, its METADATA. (This and
    the other per-wheel records are NamedTuples, as WheelEntry is: see there.)"""

    entry: WheelEntry
    wheel: str  # its file in dist
    metadata_bytes: bytes


# A wheel is read into memory once (hash, METADATA, then its copy into the index) up to this size;
# bigger ones are hashed and copied from the file.
_READ_WHOLE = 64 << 20


def _read_fd(fd: int, size: int) -> bytes:
    """The whole file behind `fd`, whose size is `size`: one read when it holds that many bytes
    (one more is asked for, so a file that grew since its stat is read on to its end)."""
    chunk = os.read(fd, max(size + 1, 1 << 16))
    if len(chunk) == size:  # no read to see the end: a full build reads 20,000 files
        return chunk
    chunks = [chunk]
    while chunk:
        chunk = os.read(fd, max(size + 1, 1 << 16))
        chunks.append(chunk)
    return b"".join(chunks)


# Zip records, compiled once: the end of the central directory, a central directory entry (from its
# flags on), and a local header's name and extra lengths.
_END = struct.Struct("<4s4H2LH")
_ENTRY = struct.Struct("<8xHH4xLLLHHH8xL")
_LOCAL_NAMES = struct.Struct("<HH")


def _zip_members(data: bytes, wanted: Callable[[str], bool], ends: tuple[bytes, ...]) -> dict[str, bytes] | None:
    """The members of a zip archive (in memory) whose names `wanted` accepts, or None when the
    archive is anything but a plain one (zip64, encryption, a method other than stored/deflate,
    a repeated name, an offset that does not add up): zipfile then reads it and says what is wrong.
    A name is decoded and given to `wanted` only when it ends with one of `ends` (ASCII, the same
    bytes in UTF-8 and cp437): a wheel can hold thousands of members.

    A full build reads thousands of small wheels; zipfile builds a ZipInfo for every member of
    each and cost most of the build's CPU time."""
    import zlib

    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or len(data) < end + 22:
        return None
    _sig, disk, cd_disk, _n_here, count, cd_size, cd_offset, _clen = _END.unpack_from(data, end)
    if disk or cd_disk or count == 0xFFFF or cd_offset == 0xFFFFFFFF or cd_offset + cd_size != end:
        return None
    found: dict[str, tuple[int, int, int, int, int, int]] = {}
    pos = cd_offset
    for _ in range(count):
        if not data.startswith(b"PK\x01\x02", pos):
            return None
        (flags, method, crc, csize, usize, nlen, xlen, clen, offset) = (
            _ENTRY.unpack_from(data, pos))
        start, pos = pos + 46, pos + 46 + nlen + xlen + clen
        if not data.endswith(ends, start, start + nlen):  # (a slice of only the names wanted)
            continue
        raw_name = data[start:start + nlen]
        # ASCII reads the same in both encodings (and needs no codec loaded for cp437)
        name = raw_name.decode("ascii" if raw_name.isascii() else "utf-8" if flags & 0x800 else "cp437")
        if wanted(name):
            if name in found or flags & 1 or method not in (0, 8):
                return None
            found[name] = (flags, method, crc, csize, usize, offset)
    if pos != end:
        return None
    out: dict[str, bytes] = {}
    for name, (_flags, method, crc, csize, usize, offset) in found.items():
        if not data.startswith(b"PK\x03\x04", offset):
            return None
        nlen, xlen = _LOCAL_NAMES.unpack_from(data, offset + 26)
        start = offset + 30 + nlen + xlen
        raw = data[start:start + csize]
        member = raw if method == 0 else zlib.decompress(raw, -15)
        if len(member) != usize or zlib.crc32(member) != crc:
            return None
        out[name] = member
    return out


class BadZipFile(ValueError):
    """zipfile.BadZipFile as a ValueError (same name in messages: "not a valid wheel (BadZipFile:
    ...)"), so that catching it does not import zipfile, which a wheel read by _zip_members never needs."""


def _wanted(name: str) -> bool:
    """A top-level dist-info's METADATA or RECORD."""
    return name.count("/") == 1 and name.endswith((".dist-info/METADATA", ".dist-info/RECORD"))


def _read_metadata(path: Path | str, data: bytes | None = None) -> bytes:
    """METADATA of a wheel (from `data`, its bytes, when given), checked against the hash its
    RECORD gives for it. Only the central directory and these two members are read."""
    return _checked_metadata(path, data)[0]


def _checked_metadata(path: Path | str, data: bytes | None) -> tuple[bytes, bytes]:
    """_read_metadata's METADATA and its sha256 digest."""
    wanted = _wanted
    members = _zip_members(data, wanted, (b".dist-info/METADATA", b".dist-info/RECORD")) if data is not None else None
    if members is not None:
        names = list(members)
    else:
        import io
        import zipfile

        try:
            with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as zf:
                names = zf.namelist()
                members = {n: zf.read(n) for n in names if wanted(n)}
        except zipfile.BadZipFile as exc:  # as a ValueError: callers need not import zipfile
            raise BadZipFile(str(exc)) from None
    infos = [n for n in names if n.endswith(".dist-info/METADATA")]
    if len(infos) != 1:
        raise ValueError(f"expected one *.dist-info/METADATA at the top, found {len(infos) or 'none'}")
    metadata = members[infos[0]]
    record = members[infos[0].rsplit("/", 1)[0] + "/RECORD"].decode()
    # The METADATA line found without parsing every line (RECORD lists every file of the wheel);
    # a valid dist-info name holds no comma or quote, but a writer may quote every field.
    start = f"\n{record}".find(f"\n{infos[0]},")
    line = record[start:].partition("\n")[0].rstrip("\r") if start >= 0 else None
    if line is not None and '"' not in line:  # what csv would read: no quoting to undo
        rows = [line.split(",")]
    else:
        import csv

        try:
            rows = list(csv.reader([line] if line is not None else record.splitlines()))
        except csv.Error as exc:
            raise ValueError(f"RECORD is not valid CSV ({exc})") from None
    for row in rows:
        if len(row) > 1 and row[0] == infos[0]:
            algo, _, digest = row[1].partition("=")
            if algo != "sha256":
                raise ValueError(f"RECORD hashes METADATA with {algo!r}, expected sha256")
            # base64.urlsafe_b64encode without importing base64 (a module for one call)
            sha = hashlib.sha256(metadata).digest()
            actual = (binascii.b2a_base64(sha, newline=False).rstrip(b"=")
                      .replace(b"+", b"-").replace(b"/", b"_").decode())
            if actual != digest:
                raise ValueError("METADATA does not match the hash in RECORD")
            return metadata, sha
    raise ValueError("RECORD has no line for METADATA")


_SINGLE_FIELDS = ("name", "version", "requires-python")


def _core_fields(metadata: bytes) -> dict[str, str]:
    """Name, Version and Requires-Python from METADATA's headers (lower-case keys), read as
    packaging.metadata.parse_email reads them with the email module's compat32 policy: folded
    lines kept, a repeated field or one that is not UTF-8 left out (lenient like pip).

    Not parse_email itself: importing packaging.metadata (requirements, markers, specifiers and
    their regular expressions) cost more than everything else an incremental publish does."""
    found: dict[str, list[list[str]]] = {}  # field -> each occurrence's lines
    current: list[str] | None = None
    # Only the headers are read: the loop stops at the first empty line at the latest, so the
    # body (often a whole README) is neither decoded nor split.
    ends = [i for i in (metadata.find(b"\n\n"), metadata.find(b"\r\n\r\n")) if i >= 0]
    if ends:
        metadata = metadata[:min(ends) + 1]
    for line in metadata.decode("utf-8", "surrogateescape").splitlines(keepends=True):
        if line[:1] in (" ", "\t") and current is not None:
            current.append(line)  # a folded continuation of the previous header
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or line.strip() == "":  # the body (or a line that ends the headers)
            break
        current = [value.lstrip(" \t")]
        found.setdefault(name.lower(), []).append(current)
    out: dict[str, str] = {}
    for key in _SINGLE_FIELDS:
        values = found.get(key)
        if values and len(values) == 1:
            text = "".join(values[0]).rstrip("\r\n")
            if text.isascii() or not any("\udc80" <= c <= "\udcff" for c in text):
                out[key] = text
    return out


def inspect_wheel(path: Path | str, target: str, sha256: str | None = None, data: bytes | None = None,
                  stat: os.stat_result | None = None) -> tuple[WheelEntry, bytes]:
    """Check a wheel (filename, RECORD hash of METADATA, name/version agree) and describe it.
    `data` (its bytes), `sha256` and `stat` save reading the file again when the caller has them."""
    try:
        filename = os.path.basename(path)
        name, version, _build, _tags = parse_wheel_filename(filename)
    except BadWheelName as exc:
        raise IndexBuildError(f"{path}: not a valid wheel filename ({exc}); rename or delete it") from None
    try:
        metadata, metadata_sha = _checked_metadata(path, data)
    except (KeyError, ValueError, OSError) as exc:
        raise IndexBuildError(f"{path}: not a valid wheel ({type(exc).__name__}: {exc}); "
                              "rebuild it or delete it from dist") from None
    raw = _core_fields(metadata)
    meta_name, meta_version = raw.get("name", ""), raw.get("version", "")
    try:
        same_version = parse_version(meta_version) == version
    except InvalidVersion:
        same_version = False
    if canonical_name(meta_name) != name or not same_version:
        raise IndexBuildError(f"{path}: METADATA says {meta_name} {meta_version} but the filename says "
                              f"{name} {version}; the wheel is broken, rebuild it")
    requires_python = raw.get("requires-python")
    stat = stat or os.stat(path)
    # (target, project, filename, version, sha256, size, requires_python, metadata_sha256, upload_time):
    # positional, as made once per wheel
    entry = WheelEntry(target, name, filename, version_text(version), sha256 or sha256_file(Path(path)),
                       stat.st_size, requires_python or None, metadata_sha.hex(), upload_time(stat.st_mtime_ns))
    return entry, metadata


class _Candidate(NamedTuple):
    """A dist wheel whose build record allows publishing it (admission checks the rest)."""

    target: str
    path: str  # its file in dist: a string (a Path per wheel cost more than parsing its METADATA)
    name: str  # its file name
    expected_sha256: str | None  # from its build record, if it has one


_DECODER = json.JSONDecoder()


def _json_doc(data: bytes) -> object:
    """json.loads(data), a third faster for a document in UTF-8 that starts with its value, as
    build records do (json.loads first guesses the encoding and skips leading white space; a
    full build reads 10,000 records): anything else goes to json.loads."""
    try:
        text = data.decode()
        value, end = _DECODER.raw_decode(text)
    except ValueError:  # (UnicodeDecodeError too) json.loads says what is wrong, or reads it
        return json.loads(data)
    if end != len(text) and text[end:].strip(" \t\n\r"):
        return json.loads(data)  # data after the value: its error
    return value


class _Records(NamedTuple):
    """The build records of one dist folder (_read_records)."""

    by_wheel: dict[str, tuple[str, dict]]  # wheel filename -> its record's file name and contents
    failure: Failure | None  # the newest build of the folder, when it failed
    unreadable: list[str]  # records that cannot be read, with why


def _read_records(top: str, names: list[str]) -> _Records:
    """Build records (`*.json` beside the wheels, see ot2wheels.records; `names` lists the
    folder): by the wheel they name, and whether the newest one (by modification time) is a
    failed build. `top`: the folder (paths as strings: a Path per record was a tenth of a full
    build's scan)."""
    by_wheel: dict[str, tuple[str, dict]] = {}
    unreadable: list[str] = []
    newest: tuple[int, str, dict] | None = None
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = f"{top}/{name}"
        try:
            fd = os.open(path, os.O_RDONLY)  # one lookup of the path for its time and its bytes
            try:
                st = os.fstat(fd)
                mtime, data = st.st_mtime_ns, _json_doc(_read_fd(fd, st.st_size))
            finally:
                os.close(fd)
        except (ValueError, OSError) as exc:  # a truncated record names no wheel: nothing is published
            unreadable.append(f"{path}: unreadable build record ({exc}); fix or delete it")
            continue
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("wheel"), str):
            by_wheel[data["wheel"]] = (name, data)
        if newest is None or (mtime, name) > newest[:2]:
            newest = (mtime, name, data)
    failure = None
    if newest is not None and newest[2].get("result") == "failed":
        from ..report import error_line  # the same extraction as the status page

        data, record = newest[2], Path(top, newest[1])
        log = record.with_name(data["log"]) if isinstance(data.get("log"), str) and data["log"] else None
        failure = Failure(version=str(data.get("version", "?")),
                          error=error_line(str(log) if log else None, data.get("error")),
                          log=log.name if log else "")
    return _Records(by_wheel, failure, unreadable)


def _record_verdict(record: dict) -> str | None:
    """Why a wheel must not be published according to its current build record, or None.

    Published: the build passed (or reused a passing one), the gate passed and the smoke test
    under qemu passed. Every recipe has a [smoke] section (the recipe schema requires it), so a
    wheel whose smoke test has not run yet is not published either.
    """
    result = record.get("result")
    if result not in ("passed", "reused"):
        return f"its build record says result={result!r}"
    gate = record.get("gate") or {}
    if isinstance(gate, dict) and gate.get("passed") is False:
        return "its build record says the gate failed"
    smoke = record.get("smoke") or {}
    if not isinstance(smoke, dict) or "passed" not in smoke:
        return "its smoke test has not run yet (invoke test-arm / nox -s build-*)"
    if smoke.get("passed") is not True:
        return "its smoke test under qemu failed"
    return None


def scan_project(dist_dir: Path, folder: str, targets: _Targets) -> tuple[list[_Candidate], list[str], Failure | None]:
    """The wheels of one dist folder ("<target>/<project>") that may be published, the others (why),
    and the newest build's failure if it failed.

    A wheel is published only from a folder named after a target of `targets`, and only if a
    build record beside it (its current one: a later build of the same version rewrites the
    record) names it and says it passed (see _record_verdict). Everything else is reported,
    never published.
    """
    target = folder.split("/", 1)[0]
    top = f"{dist_dir}/{folder}"  # a string: see _Candidate
    known = target in targets.targets
    found, skipped = [], []
    try:
        names = sorted(os.listdir(top))  # one listing for records and wheels
    except (FileNotFoundError, NotADirectoryError):  # removed since dist_folders listed it
        names = []
    recs = _read_records(top, names) if known else _Records({}, None, [])
    skipped += recs.unreadable
    for name in names:
        if not name.endswith(".whl"):
            continue
        where = f"{folder}/{name}"
        if not known:
            skipped.append(f"{where}: {target!r} is not a target of {targets.source}; "
                           "move the wheel under dist/<target>/ or add the target")
            continue
        if name not in recs.by_wheel:
            skipped.append(f"{where}: no build record names it (left by an earlier build or put "
                           "there by hand); rebuild it to publish it")
            continue
        record_name, record = recs.by_wheel[name]
        why = _record_verdict(record)
        if why:
            skipped.append(f"{where}: {why} ({record_name})")
            continue
        found.append(_Candidate(target, f"{top}/{name}", name, record.get("wheel_sha256")))
    return found, skipped, recs.failure


class _TagCheck:
    """Whether a wheel's tags fit its target; each target's tag set is computed once (`known`:
    the sets the scan cache kept, as strings), and only for a wheel whose tags are not among
    the target's common ones (Target.common_tags)."""

    def __init__(self, targets: _Targets, known: dict[str, list[str]] | None = None,
                 common: dict[str, list[str]] | None = None) -> None:
        self.targets = targets
        self.known = dict(known or {})
        self.tags: dict[str, frozenset[str]] = {}
        self.common = {name: frozenset(tags) for name, tags in (common or {}).items()}  # kept by the scan cache

    def __call__(self, entry: WheelEntry, path: Path | str) -> None:
        name = entry.target  # a Target only when needed: an incremental publish may not have parsed the file
        if name not in self.common:
            self.common[name] = self.targets.targets[name].common_tags()
        if parse_wheel_filename(entry.filename)[3] & self.common[name]:
            return
        t = self.targets.targets[name]
        if name not in self.tags:
            if name not in self.known:
                self.known[name] = sorted({str(tag) for tag in t.supported_tags()})
            self.tags[name] = frozenset(self.known[name])
        _check_tags(entry, path, t, self.tags[name])


def _check_tags(entry: WheelEntry, path: Path | str, t: Target, supported: frozenset[str]) -> None:
    wheel_tags = parse_wheel_filename(entry.filename)[3]
    if not wheel_tags & supported:
        raise IndexBuildError(
            f"{path}: its tags {sorted(wheel_tags)} cannot be installed on target "
            f"{t.name} (CPython {t.python}, {t.platform}, glibc {t.glibc_str}); move it to the right "
            "dist/<target>/ folder or delete it")


_Publish = Callable[[_New, bytes | None, os.stat_result], None]


def _admit(candidates: list[_Candidate], published: Mapping[tuple[str, str], tuple[str, Path | str]],
           check_tags: _TagCheck, skipped: list[str], publish: _Publish | None = None) -> dict[tuple[str, str], _New]:
    """The candidates that are new to the index (checked); `published` maps each published
    (target, filename) to (sha256, its file in the index). Same filename with other bytes is an
    error (published wheels are immutable); a broken wheel is skipped with the reason.
    `publish` is called with each new wheel as it is admitted, with its bytes (None when too
    big to hold) and its stat."""

    def read(cand: _Candidate) -> tuple[str, tuple[WheelEntry, bytes] | IndexBuildError | None,
                                        bytes | None, os.stat_result] | None:
        """(sha256, the wheel described or why it is broken, its bytes or None, its stat).
        The wheel is read once: hashed and its METADATA taken from the same bytes."""
        old = published.get((cand.target, cand.name))
        if old is not None and os.path.exists(old[1]) and os.path.samefile(old[1], cand.path):
            return None
        data: bytes | None = None
        fd = os.open(cand.path, os.O_RDONLY)  # os-level: a buffered file object costs more than the read
        try:
            st = os.fstat(fd)
            if st.st_size <= _READ_WHOLE:
                data = _read_fd(fd, st.st_size)
                sha = hashlib.sha256(data).hexdigest()
            else:
                with open(fd, "rb", closefd=False) as fh:
                    sha = hashlib.file_digest(fh, "sha256").hexdigest()
        finally:
            os.close(fd)
        if old is not None or (cand.expected_sha256 and sha != cand.expected_sha256):
            return sha, None, None, st
        try:
            return sha, inspect_wheel(cand.path, cand.target, sha, data, st), data, st
        except IndexBuildError as exc:
            return sha, exc, None, st

    new: dict[tuple[str, str], _New] = {}
    for cand in candidates:  # decisions in input order: deterministic
        result = read(cand)
        if result is None:
            continue
        target, path = cand.target, cand.path
        key = (target, cand.name)
        old = published.get(key)
        sha, described, data, st = result
        if cand.expected_sha256 and sha != cand.expected_sha256:
            skipped.append(f"{target}/{cand.name}: changed since its build record was written "
                           f"(sha256 {sha}, record says {cand.expected_sha256}); rebuild it")
            continue
        if old is not None:
            if sha != old[0]:
                raise IndexBuildError(
                    f"{path} (sha256 {sha}) has the same filename as the published "
                    f"{old[1]} (sha256 {old[0]}) but different content. Published "
                    "wheels are immutable: bump the version or add a build tag "
                    "(e.g. `python -m wheel tags --build 1 WHEEL`), or delete the new one from dist.")
            continue
        if isinstance(described, IndexBuildError):  # one broken wheel must not stop every other project
            skipped.append(f"{target}/{os.path.basename(os.path.dirname(path))}/{cand.name}: {described}")
            continue
        assert described is not None
        entry, metadata = described
        check_tags(entry, path)
        new[key] = _New(entry, path, metadata)
        if publish is not None:
            publish(new[key], data, st)
    return new


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def _folder_key(folder: str) -> tuple[str, str]:
    target, _, project = folder.partition("/")
    return target, canonical_name(project)


class _Targets(Protocol):
    """What scanning and admitting wheels need of the targets: each by name, and their file
    (a TargetSet, or _CachedTargets)."""

    @property
    def targets(self) -> Mapping[str, Target]: ...

    @property
    def source(self) -> Path: ...

