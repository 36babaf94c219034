"""Publishing what is new without a pass over everything published.

Two small files make it possible:

- `index/.ot2wheels-index.json` (in the tree, swapped with it by a full build, deterministic):
  every published wheel's entry, i.e. what the pages say. Reading it replaces reading every
  project page.
- `.index.scan.json` (beside the tree, like `.index.lock`): the mtime of every dist folder
  (`dist/<target>/<project>/`) when it was last scanned, what it reported as skipped, a
  fingerprint of everything else the pages depend on (yank list, targets file, base URL, tool
  version) and the sha256 of the state file it belongs to. It is written only after the tree
  it describes is complete, so a crash leaves it older than the tree: more folders rescanned
  and pages recomputed, never a wheel missed.

An incremental build rescans only folders whose mtime moved (wheels and records are written by
rename, which changes it), admits the new wheels with the same checks as a full build, and
updates the live tree in place, each file atomically and in an order that keeps every page a
reader can fetch consistent: new wheel and .metadata files first (not yet linked), then the
project pages that link them, then the target's root pages and constraints, then the landing
page, then the state file. Anything else (a removal, a changed yank list, targets file, base
URL or tool version, a missing or mismatched state) takes the full path in build.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, fields
from operator import attrgetter
from pathlib import Path

from ..fsutil import atomic_copy, atomic_write
from .model import Failure, WheelEntry

STATE_NAME = ".ot2wheels-index.json"
FORMAT = 1
_FIELDS = [f.name for f in fields(WheelEntry)]
_ROW = attrgetter(*_FIELDS)
# A folder modified this close to the scan may change again within the file system's timestamp
# granularity without its mtime moving: remember it as "rescan next time".
RACY_NS = 2_000_000_000
RESCAN = -1


def state_bytes(entries: list[WheelEntry], failures: dict[tuple[str, str], Failure]) -> bytes:
    rows = sorted(map(list, map(_ROW, entries)))
    failed = sorted([t, p, f.version, f.error, f.log] for (t, p), f in failures.items())
    return (json.dumps({"format": FORMAT, "fields": _FIELDS, "entries": rows, "failures": failed},
                       separators=(",", ":")) + "\n").encode()


def read_state_bytes(index_dir: Path) -> bytes | None:
    try:
        return (index_dir / STATE_NAME).read_bytes()
    except OSError:
        return None


def parse_state(data: bytes) -> tuple[list[WheelEntry], dict[tuple[str, str], Failure], bytes] | None:
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT or doc.get("fields") != _FIELDS:
            return None
        failures = {(t, p): Failure(v, e, log) for t, p, v, e, log in doc["failures"]}
        return [WheelEntry(*row) for row in doc["entries"]], failures, data
    except (ValueError, TypeError, KeyError):
        return None


def scan_cache_path(index_dir: Path) -> Path:
    return index_dir.parent / f".{index_dir.name}.scan.json"


@dataclass(frozen=True)
class ScanCache:
    fingerprint: str
    tree: str  # sha256 of the state file this scan belongs to
    folders: dict[str, list]  # folder -> [mtime_ns or RESCAN, [skipped lines]]
    summary: list  # [[targets], projects, wheels] of that state: a no-op build need not parse it


def summary(entries: list[WheelEntry]) -> list:
    keys = {(e.target, e.project) for e in entries}
    return [sorted({t for t, _p in keys}), len(keys), len(entries)]


def read_scan_cache(index_dir: Path) -> ScanCache | None:
    try:
        doc = json.loads(scan_cache_path(index_dir).read_bytes())
        return ScanCache(doc["fingerprint"], doc["tree"], {k: list(v) for k, v in doc["folders"].items()},
                         list(doc["summary"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def write_scan_cache(index_dir: Path, cache: ScanCache) -> None:
    atomic_write(scan_cache_path(index_dir), json.dumps(
        {"fingerprint": cache.fingerprint, "tree": cache.tree, "folders": cache.folders, "summary": cache.summary},
        separators=(",", ":"), sort_keys=True) + "\n")


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def stamp(mtime_ns: int, now_ns: int) -> int:
    """The mtime to remember for a folder scanned at `now_ns`."""
    return RESCAN if mtime_ns >= now_ns - RACY_NS else mtime_ns


def now_ns() -> int:
    return time.time_ns()


def write_if_changed(index_dir: Path, rel: str, data: bytes, written: list[str]) -> None:
    path = index_dir / rel
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    atomic_write(path, data)
    written.append(rel)


def publish_file(index_dir: Path, rel: str, src: Path) -> None:
    """A new wheel into the live tree (atomically; nothing links to it yet).

    Copied, not hard-linked to dist/: ot2wheels itself only renames files into dist/, but a
    person's `cp other.whl dist/<target>/<project>/<same name>` rewrites the file in place, and a
    link would change the published wheel with it (tests/test_index.py::
    test_same_filename_different_bytes_is_refused). Unchanged files of the index itself are
    linked between trees, since the index never rewrites a file in place.
    """
    dest = index_dir / rel
    atomic_copy(src, dest)
    st = os.stat(src)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))  # like a full build's copy
