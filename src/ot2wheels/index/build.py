"""Regenerate the static index from dist/ and from what the index already publishes: publish
what is new in place (here, with incremental.py) or rebuild the whole tree (full.py).

Layout of the index directory (see docs/index.md):

    index.html                                   landing page for people
    <target>/constraints.txt                     newest version of every project
    <target>/simple/index.html | index.json      PEP 503 / PEP 691 root
    <target>/simple/<project>/index.html | .json PEP 503 / PEP 691 project page
    <target>/files/<project>/<wheel>             the wheel (a copy: the index is self-contained)
    <target>/files/<project>/<wheel>.metadata    PEP 658 core metadata

Rules: a published wheel stays published (only `remove` takes one out); a dist wheel whose
filename is published with another sha256 is refused; unchanged files are hard-linked from
the previous tree, so only projects whose pages changed are rewritten; the new tree is built
beside the old one and swapped in atomically.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import IndexBuildError
from ..fsutil import atomic_write_all, disk_error, remove_tree
from ..wheelname import BadWheelName, parse_wheel_filename
from . import incremental, quick, swap
from .model import WheelEntry, YankList, load_yanks, project_row
from .scan import IndexResult, _admit, _folder_key, _New, _same_bytes, _TagCheck, _Targets, scan_project

if TYPE_CHECKING:  # render is imported where pages are written: a no-op build writes none
    from ..targets import Target, TargetSet  # parsed where needed: publishing a wheel does not


def build_index(
    dist_dir: Path,
    index_dir: Path,
    yanked_file: Path | None,
    base_url: str | None = None,
    *,
    targets: TargetSet | Path,
    remove: Iterable[tuple[str, str]] = (),
    progress: Callable[[str], None] | None = None,
    full: bool = False,
    listed: quick.Listed | None = None,
    workers: int | None = None,
) -> IndexResult:
    """Regenerate `index_dir` from `dist_dir` plus what `index_dir` already publishes.

    `remove` lists (target, wheel filename) pairs to take out of the index on purpose; use
    `remove_wheels` rather than passing it here. `progress` is called with the relative path
    of each project page as it is written. `full` skips the incremental path (incremental.py):
    every page is recomputed and the whole tree swapped in at once. `listed`: `quick.probe`'s
    listing from a caller that just listed the folders (cli.py), so an incremental build does not
    list them again (a folder changed since then has a newer mtime than the one remembered, so it
    is rescanned next time), nor read the scan file again if it is still the one read then.
    `workers`: processes a full build splits its wheels and files over (fanout.py; None: one per
    core for a large index). `targets`: the targets, or their file, which then is parsed only if
    the scan file's copy of what the pages need of it is not valid.
    """
    try:
        return _build_index(dist_dir, index_dir, yanked_file, base_url, targets, remove, progress, full, listed,
                            workers)
    except OSError as exc:  # disk full, permissions: one line naming the path, not a traceback
        raise disk_error(exc, exc.filename or index_dir, "building the index") from None


def _build_index(dist_dir: Path, index_dir: Path, yanked_file: Path | None, base_url: str | None,
                 targets: TargetSet | Path, remove: Iterable[tuple[str, str]],
                 progress: Callable[[str], None] | None, full: bool,
                 listed: quick.Listed | None = None, workers: int | None = None) -> IndexResult:
    start = time.monotonic()
    dist_dir, index_dir = Path(dist_dir).absolute(), Path(index_dir).absolute()
    if base_url is not None and not base_url.startswith(("http://", "https://", "file://")):
        raise IndexBuildError(f"base URL {base_url!r} must be absolute (http://, https:// or file://)")
    yanks = load_yanks(yanked_file)
    remove = list(remove)
    with swap.locked(index_dir):
        swap.recover(index_dir)
        fp = _fingerprint(dist_dir, yanked_file, base_url, targets)
        if not remove and not full:
            done = _incremental(dist_dir, index_dir, fp, yanks, base_url, targets, progress, start, listed)
            if done is not None:
                return done
        from .full import rebuild

        return rebuild(dist_dir, index_dir, remove, fp, yanks, base_url, _loaded(targets), progress, workers, start)


def _fingerprint(dist_dir: Path, yanked_file: Path | None, base_url: str | None, targets: TargetSet | Path) -> str:
    """What the pages depend on besides the wheels: a change means a full build."""
    source = targets if isinstance(targets, Path) else targets.source
    return quick.fingerprint(str(dist_dir), str(yanked_file) if yanked_file else None, base_url, str(source))


def _loaded(targets: TargetSet | Path) -> TargetSet:
    from ..targets import load_targets

    return load_targets(targets) if isinstance(targets, Path) else targets


class _Names(Mapping[str, "Target"]):
    """The targets of a file, named from the scan file, each parsed from the file on first use."""

    def __init__(self, source: Path, names: Iterable[str]) -> None:
        self.source = source
        self.names = frozenset(names)
        self.parsed: TargetSet | None = None

    def load(self) -> TargetSet:
        if self.parsed is None:
            self.parsed = _loaded(self.source)
        return self.parsed

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Target:
        return self.load().targets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.names))

    def __len__(self) -> int:
        return len(self.names)


class _CachedTargets:
    """The targets as an incremental publish reads them, from the scan file (valid while its
    fingerprint, which covers the targets file, matches): which targets exist, and the file.
    A Target itself (a target's tags not cached yet, a tag error to describe) parses the file."""

    def __init__(self, source: Path, names: Iterable[str]) -> None:
        self.source = source
        self.targets = _Names(source, names)


def _incremental(dist_dir: Path, index_dir: Path, fp: str, yanks: YankList, base_url: str | None,
                 targets: TargetSet | Path, progress: Callable[[str], None] | None, start: float,
                 listed: quick.Listed | None) -> IndexResult | None:
    """Publish what is new in changed dist folders, touching only what that changes; None when a
    full build is needed (see incremental.py)."""
    read = listed[2] if listed else None
    if read is not None and read[0] != quick.scan_stamp(str(index_dir)):  # another build ran since
        listed = read = None
    cache = incremental.scan_cache_from(read[1]) if read else incremental.read_scan_cache(index_dir)
    if cache is None or cache.fingerprint != fp or not index_dir.is_dir():
        return None
    raw = quick.read_state_bytes(str(index_dir))
    if raw is None or hashlib.sha256(raw).hexdigest() != cache.tree:
        return None
    scanned_at, folders = listed[:2] if listed else (incremental.now_ns(), quick.dist_folders(str(dist_dir)))
    changed = read[2] if read else quick.changed_folders(str(dist_dir), cache.folders, folders)
    if not changed and set(cache.folders) <= set(folders):  # nothing to look at: no need to parse the state
        return _result(index_dir, cache.summary, (), cache.folders, yanks, False, [], start)
    state = incremental.parse_state(raw)
    if state is None:
        return None
    if isinstance(targets, Path):  # scan_project and _TagCheck read `targets` and `source` of a TargetSet
        known: _Targets = _CachedTargets(targets, cache.targets)
    else:
        known = targets
    try:
        return _publish_new(dist_dir, index_dir, fp, yanks, base_url, known, progress, start, cache, state,
                            folders, changed, scanned_at)
    except (_FullBuildNeeded, ValueError, KeyError, TypeError, FileNotFoundError):  # or a page not as we wrote it
        return None


class _FullBuildNeeded(Exception):
    pass


def _publish_new(dist_dir: Path, index_dir: Path, fp: str, yanks: YankList, base_url: str | None,
                 targets: _Targets, progress: Callable[[str], None] | None, start: float,
                 cache: incremental.ScanCache, state: incremental.State, folders: dict[str, int],
                 changed: list[str], scanned_at: int) -> IndexResult:
    top = str(index_dir)
    pages: dict[tuple[str, str], list[WheelEntry]] = {}  # (target, project) -> its published wheels

    def entries_of(key: tuple[str, str]) -> list[WheelEntry]:
        if key not in pages:
            pages[key] = incremental.page_entries(index_dir, *key) if key in state.rows else []
            if key in state.rows and project_row(*key, pages[key], yanks) != state.rows[key]:
                # The page is newer than the state: a publish was killed before it renamed the
                # state in. The full path rebuilds everything from the pages.
                raise _FullBuildNeeded
        return pages[key]

    check_tags = _TagCheck(targets, cache.tags, cache.common)
    new: dict[tuple[str, str], _New] = {}
    remembered = {f: v for f, v in cache.folders.items() if f in folders}
    for f in quick.settled(cache.folders, folders, changed, scanned_at):  # the scan file is rewritten anyway
        remembered[f] = [folders[f], cache.folders[f][1], None]
    failures = dict(state.failures)
    for folder in changed:
        seen = quick.seen(str(dist_dir), folder, folders[folder])
        found, skipped, failure = scan_project(dist_dir, folder, targets)
        published: dict[tuple[str, str], tuple[str, str]] = {}
        for cand in found:  # a filename can only be published under its own project
            project = _wheel_project(cand.name)
            if project is not None:
                published.update((e.key, (e.sha256, f"{top}/{e.target}/files/{e.project}/{e.filename}"))
                                 for e in entries_of((cand.target, project)))
        new.update(_admit(found, published, check_tags, skipped))
        remembered[folder] = [folders[folder], skipped, seen]
        if folder.split("/")[0] in targets.targets:
            key = _folder_key(folder)
            if failure is None:
                failures.pop(key, None)
            else:
                failures[key] = failure
    touched = sorted({(n.entry.target, n.entry.project) for n in new.values()})
    people = sorted({p for _t, p in touched} | {
        p for (t, p) in set(failures) | set(state.failures) if failures.get((t, p)) != state.failures.get((t, p))})
    written: list[str] = []
    writes: list[tuple[str, bytes | Path]] = []
    summary = cache.summary
    tree = cache.tree
    if people:
        from . import render

        links = render.Links(base_url)
        rows = dict(state.rows)
        for n in new.values():  # 1. the files, not linked from anywhere yet
            rel = f"{n.entry.target}/files/{n.entry.project}/{n.entry.filename}"
            writes += [(rel, Path(n.wheel)), (rel + ".metadata", n.metadata_bytes)]
            written.append(rel)
        for t, p in touched:  # 2. their project pages
            mine = entries_of((t, p)) + [n.entry for n in new.values() if (n.entry.target, n.entry.project) == (t, p)]
            pages[(t, p)] = mine
            rows[(t, p)] = project_row(t, p, mine, yanks)
            writes += [(f"{t}/simple/{p}/index.html", render.project_html(p, mine, yanks, links)),
                       (f"{t}/simple/{p}/index.json", render.project_json(p, mine, yanks, links))]
        served = sorted({t for t, _p in rows})
        listed = {p for _t, p in rows} | {p for _t, p in failures}
        if not set(people) <= listed:  # a failure-only project page to delete: the full path does that
            raise _FullBuildNeeded
        for p in people:  # 3. the pages for people
            mine = [e for t in served if (t, p) in rows for e in entries_of((t, p))]
            writes.append((f"project/{p}/index.html", render.project_page(p, mine, failures, yanks, base_url)))
        for t in sorted({t for t, _p in touched}):  # 4. root pages and constraints, when they change
            mine_rows = [r for (rt, _p), r in sorted(rows.items()) if rt == t]
            if any((t, p) not in state.rows for tt, p in touched if tt == t):
                names = [r.project for r in mine_rows]
                writes += [(f"{t}/simple/index.html", render.root_html(names, t, links)),
                           (f"{t}/simple/index.json", render.root_json(names))]
            if any(rows[(t, p)].newest != getattr(state.rows.get((t, p)), "newest", None)
                   for tt, p in touched if tt == t):
                writes.append((f"{t}/constraints.txt", render.constraints_from_rows(t, mine_rows)))
        infos = [cache.targets.get(t) or render.TargetInfo(name=t) for t in sorted(set(served) | {t for t, _p in failures})]
        writes.append(("index.html", render.landing_from_rows(infos, [rows[k] for k in sorted(rows)], base_url,
                                                               failures)))
        unused = yanks.unused_rules([n.entry for n in new.values()], state.unused_yanks) if yanks.rules else []
        new_state = incremental.State(rows, failures, unused)
        state_data = incremental.state_bytes(new_state)  # 5. the state, last in the tree
        writes.append((incremental.STATE_NAME, state_data))
        tree = hashlib.sha256(state_data).hexdigest()
        summary = incremental.summary(new_state)
        writes = [(rel, data) for rel, data in writes if not isinstance(data, bytes) or rel in written
                  or not _same_bytes(index_dir / rel, data)]
        written += [rel for rel, data in writes if isinstance(data, bytes)]
    if writes or remembered != cache.folders or check_tags.known != cache.tags:
        scan = incremental.ScanCache(fp, tree, remembered, summary, check_tags.known, cache.targets, cache.common)
        items = [(index_dir / rel, data) for rel, data in writes]
        items.append((Path(incremental.scan_cache_path(str(index_dir))), incremental.scan_cache_bytes(scan)))

        def renamed(path: Path) -> None:
            if progress and path.name == "index.html" and path.parent.parent.name == "simple":
                progress(path.relative_to(index_dir).as_posix())

        staging = swap.staging_dir(index_dir)
        staging.mkdir(exist_ok=True)
        try:
            atomic_write_all(items, renamed, staging=staging)
        finally:
            try:
                os.rmdir(staging)  # empty: every temp file was renamed in or removed
            except OSError:
                remove_tree(staging, ignore_errors=True)
    return _result(index_dir, summary, tuple(sorted(f"{t}/{f}" for t, f in new)), remembered, yanks,
                   bool(people), written, start)


def _wheel_project(filename: str) -> str | None:
    try:
        return str(parse_wheel_filename(filename)[0])
    except BadWheelName:
        return None


def _result(index_dir: Path, summary: list, added: tuple[str, ...], folders: dict[str, list], yanks: YankList,
            changed: bool, written: list[str], start: float) -> IndexResult:
    """An incremental build's result, counted from the state's summary."""
    targets, projects, wheels, unused = summary
    return IndexResult(
        index_dir=index_dir,
        targets=tuple(targets),
        projects=projects,
        wheels=wheels,
        added=added,
        removed=(),
        skipped=tuple(line for f in sorted(folders) for line in folders[f][1]),
        rewritten=tuple(sorted(r for r in written if "/files/" not in r or r.endswith(".metadata"))),
        unused_yanks=tuple(yanks.rules[i].where for i in unused if i < len(yanks.rules)),
        changed=changed,
        seconds=time.monotonic() - start,
    )


def remove_wheels(dist_dir: Path, index_dir: Path, yanked_file: Path | None, wheels: Iterable[tuple[str, str]],
                  base_url: str | None = None, *, targets: TargetSet) -> IndexResult:
    """Take published wheels out of the index on purpose: (target, wheel filename) pairs.

    Refused for a wheel still in dist (the next build would publish it again). Prefer yanking
    (the yank list) for anything users may already depend on.
    """
    wheels = list(wheels)
    if not wheels:
        raise IndexBuildError("nothing to remove: name at least one <target>/<wheel filename>")
    result = build_index(dist_dir, index_dir, yanked_file, base_url, targets=targets, remove=wheels)
    spare = swap.spare_dir(Path(index_dir).absolute())
    with swap.locked(Path(index_dir).absolute()):  # the spare (previous tree) must not keep them either
        if spare.is_dir():
            remove_tree(spare)
    return result
