"""Publishing what is new without a pass over everything published.

What makes it possible:

- `index/.ot2wheels-index.json` (in the tree, swapped with it by a full build, deterministic):
  one compact row per published (target, project) -- its wheel count, the versions served and
  the newest one not yanked -- plus the failed newest builds and the unused yank rules. That is
  everything the pages listing all projects (root pages, constraints.txt, landing page) say.
- Each project's PEP 691 page (`<target>/simple/<project>/index.json`) is that project's part of
  the state: publishing a wheel reads the pages of its own project only.
- `.index.scan.json` (beside the tree, like `.index.lock`): the mtime of every dist folder
  (`dist/<target>/<project>/`) when it was last scanned (and its listing's digest if that was
  within 2 s of its last change), what it reported as skipped, a
  fingerprint of everything else the pages depend on (yank list, targets file, base URL, tool
  version), the sha256 of the state file it belongs to, and what the pages and checks need of
  the targets file (each target's tags and landing-page facts: publishing a wheel does not
  parse it). It is renamed into place after the
  tree it describes is complete, so a crash leaves it older than the tree: more folders
  rescanned and pages recomputed, never a wheel missed.

An incremental build rescans only folders whose mtime moved (wheels and records are written by
rename, which changes it) or, for a folder modified within 2 s of its last scan, whose listing
changed (quick.seen), admits the new wheels with the same checks as a full build, and
updates the live tree in place. All the files it writes are written and fsynced first (one
journal commit for the lot, fsutil.atomic_write_all), then renamed in an order that keeps every
page a reader can fetch consistent: new wheel and .metadata files first (not yet linked), then
the project pages that link them, the people's project pages, the target's root pages and
constraints (only when what they say changed), the landing page, the state file and last the
scan cache. Anything else (a removal, a changed yank list, targets file, base URL or tool
version, a missing or mismatched state) takes the full path (full.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from ..wheelname import parse_wheel_filename
from .model import Failure, ProjectRow, TargetInfo, WheelEntry
from .quick import STATE_NAME, now_ns, read_scan_doc, scan_cache_path

__all__ = ["STATE_NAME", "now_ns", "scan_cache_path"]  # used by build.py from here
FORMAT = 2

Failures = dict[tuple[str, str], Failure]


class State(NamedTuple):
    """The index's state file: one row per published (target, project), the failed newest builds,
    and which yank rules match nothing (indexes into the yank list)."""

    rows: dict[tuple[str, str], ProjectRow]
    failures: Failures
    unused_yanks: list[int]


def state_bytes(state: State) -> bytes:
    rows = sorted(state.rows.values())  # (target, project) first: sorted by key; dumped as lists
    failed = sorted([t, p, f.version, f.error, f.log] for (t, p), f in state.failures.items())
    return (json.dumps({"format": FORMAT, "projects": rows, "failures": failed,
                        "unused_yanks": sorted(state.unused_yanks)}, separators=(",", ":")) + "\n").encode()


def parse_state(data: bytes) -> State | None:
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            return None
        # tuple.__new__: ProjectRow(...) runs a Python-level __new__ per row, thousands per publish
        make = tuple.__new__
        rows = {(t, p): make(ProjectRow, (t, p, n, tuple(v), newest)) for t, p, n, v, newest in doc["projects"]}
        if len(rows) != len(doc["projects"]):
            return None
        failures = {(t, p): Failure(v, e, log) for t, p, v, e, log in doc["failures"]}
        return State(rows, failures, list(doc["unused_yanks"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def page_entries(index_dir: Path, target: str, project: str) -> list[WheelEntry]:
    """The published wheels of one project of one target, from its PEP 691 page: the per-project
    part of the state (what the page says is what is published)."""
    page = index_dir / target / "simple" / project / "index.json"
    doc = json.loads(page.read_bytes())
    return [WheelEntry(target=target, project=project, filename=f["filename"],
                       version=str(parse_wheel_filename(f["filename"])[1]), sha256=f["hashes"]["sha256"],
                       size=f["size"], requires_python=f.get("requires-python"),
                       metadata_sha256=f["core-metadata"]["sha256"], upload_time=f["upload-time"])
            for f in doc["files"]]


class ScanCache(NamedTuple):
    """The scan file beside the index: what the last build saw in dist/ (see above)."""

    fingerprint: str
    tree: str  # sha256 of the state file this scan belongs to
    folders: dict[str, list]  # folder -> [mtime_ns, [skipped lines], quick.seen()]
    summary: list  # [[targets], projects, wheels, unused yanks] of that state: a no-op need not parse it
    # target -> every wheel tag it accepts (computing them costs more than publishing a wheel;
    # the fingerprint covers the targets file and the packaging version they come from)
    tags: dict[str, list[str]]
    # every target of the targets file as the landing page shows it (the fingerprint covers the
    # file: parsing it and importing its code was a tenth of publishing one wheel)
    targets: dict[str, TargetInfo]
    common: dict[str, list[str]]  # target -> its common tags (Target.common_tags), likewise


def summary(state: State) -> list:
    return [sorted({t for t, _p in state.rows}), len(state.rows), sum(r.wheels for r in state.rows.values()),
            state.unused_yanks]


def read_scan_cache(index_dir: Path) -> ScanCache | None:
    return scan_cache_from(read_scan_doc(str(index_dir))[0])


def scan_cache_from(doc: dict | None) -> ScanCache | None:
    if doc is None:
        return None
    try:
        return ScanCache(doc["fingerprint"], doc["tree"], {k: list(v) for k, v in doc["folders"].items()},
                         list(doc["summary"]), {k: list(v) for k, v in doc["tags"].items()},
                         {k: TargetInfo(**{**v, "pip_target_args": tuple(v["pip_target_args"])})
                          for k, v in doc["targets"].items()}, {k: list(v) for k, v in doc["common"].items()})
    except (TypeError, KeyError, AttributeError):  # not as we wrote it
        return None


def scan_cache_bytes(cache: ScanCache) -> bytes:
    return (json.dumps({"fingerprint": cache.fingerprint, "tree": cache.tree, "folders": cache.folders,
                        "summary": cache.summary, "tags": cache.tags,
                        "targets": {k: v._asdict() for k, v in cache.targets.items()}, "common": cache.common},
                       separators=(",", ":"),
                       sort_keys=True) + "\n").encode()


def write_scan_cache(index_dir: Path, cache: ScanCache) -> None:
    from ..fsutil import atomic_write

    atomic_write(Path(scan_cache_path(str(index_dir))), scan_cache_bytes(cache))
