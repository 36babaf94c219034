"""The full rebuild of the index: every page recomputed, a whole new tree swapped in.

build.py decides between this and an incremental publish; scan.py holds what both share:
scanning the dist folders, reading and admitting wheels. Here: what the index publishes
now (read back from its pages), the new tree (`_Work`: written beside the index, or the spare
tree brought up to date), the plan of every file in it, and the swap. The per-wheel and per-page
work is split over forked processes (fanout.py). Publishing one wheel never imports this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ..errors import IndexBuildError
from ..fsutil import remove_tree
from ..wheelname import BadWheelName, canonical_name, parse_wheel_filename
from . import fanout, incremental, quick, swap
from .model import Failure, ProjectRow, WheelEntry, YankList, project_row, upload_time, version_text
from .scan import IndexResult, _admit, _folder_key, _New, _same_bytes, _TagCheck, inspect_wheel, scan_project

if TYPE_CHECKING:
    from ..targets import TargetSet
    from . import render


def rebuild(dist_dir: Path, index_dir: Path, remove: list[tuple[str, str]], fp: str, yanks: YankList,
            base_url: str | None, targets: TargetSet, progress: Callable[[str], None] | None,
            workers: int | None, start: float) -> IndexResult:
    """The full path of build_index (called with the build lock held, leftovers recovered)."""
    published = read_published(index_dir)
    folders = quick.folder_names(str(dist_dir))
    work = _work_tree(index_dir, progress, workers)
    try:
        result = _full_build(dist_dir, index_dir, work, published, folders, remove, fp, yanks, base_url, targets)
    except BaseException:
        if not work.spare:
            remove_tree(work.path, ignore_errors=True)
        raise
    return result._replace(seconds=time.monotonic() - start)


# What _fill makes of one file of the new tree: new bytes, or ("link", its path in the live tree).
# (What the workers wrote into the new tree already, new wheels and pages, is not planned.)
_Copy = tuple[str, Path]
_Source: TypeAlias = "bytes | _Copy"


@dataclass
class _Published:
    """A wheel the index publishes now, and its files there."""

    entry: WheelEntry
    wheel: Path  # in the current index
    metadata: Path | None  # in the current index, None if it must be regenerated
    metadata_bytes: bytes | None = None


def _visible_dirs(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_published(index_dir: Path) -> dict[tuple[str, str], _Published]:
    """Every wheel the index publishes now, described from its JSON pages (or the wheel itself)."""
    out: dict[tuple[str, str], _Published] = {}
    for tdir in _visible_dirs(index_dir):
        target = tdir.name
        for pdir in _visible_dirs(tdir / "files"):
            known: dict[str, dict] = {}
            page = tdir / "simple" / pdir.name / "index.json"
            if page.is_file():
                try:
                    known = {f["filename"]: f for f in json.loads(page.read_text())["files"]}
                except (ValueError, KeyError, TypeError) as exc:
                    raise IndexBuildError(f"{page}: unreadable published page ({exc}); restore it "
                                          "from a backup or delete it to have it rebuilt from the wheels") from None
            for wheel in sorted(pdir.glob("*.whl")):
                meta = wheel.with_name(wheel.name + ".metadata")
                info = known.get(wheel.name)
                size = wheel.stat().st_size
                if info and info.get("size") == size and meta.is_file():
                    try:
                        entry = _json_entry(target, wheel.name, info, size)
                    except BadWheelName as exc:
                        raise IndexBuildError(f"{wheel}: published under an invalid wheel filename ({exc}); "
                                              "remove it from the index directory by hand") from None
                    if not entry.upload_time:
                        entry = entry._replace(upload_time=upload_time(wheel.stat().st_mtime_ns))
                    out[entry.key] = _Published(entry, wheel, meta)
                else:  # not described by a page (or changed size): read the wheel itself
                    entry, metadata = inspect_wheel(wheel, target)
                    out[entry.key] = _Published(entry, wheel, None, metadata)
    return out


def _json_entry(target: str, filename: str, info: dict, size: int) -> WheelEntry:
    """A wheel as a project's JSON page describes it (`info`: its item of "files"); BadWheelName
    if its filename is not valid. upload_time is "" when the page gives none."""
    name, version, _b, _t = parse_wheel_filename(filename)
    return WheelEntry(target=target, project=name, filename=filename, version=version_text(version),
                      sha256=info["hashes"]["sha256"], size=size, requires_python=info.get("requires-python"),
                      metadata_sha256=info["core-metadata"]["sha256"], upload_time=info.get("upload-time") or "")


@dataclass(frozen=True)
class _Part:
    """What a worker did with one run of projects (see _full_build), as it sends it back: plain
    data (pickling Path objects or NamedTuples runs Python code for each; a dict's keys would
    pickle each file name twice)."""

    # per dist folder: its name, its mtime, quick.seen(), what it does not publish and why, its
    # failed newest build
    folders: list[tuple[str, int, str | None, list[str], Failure | None]]
    added: list[str]  # the new wheels it admitted and copied into the new tree, as "<target>/<wheel>"
    strays: list[tuple]  # those of a project of another run, as WheelEntry fields: see _strays
    refused: list[str]  # new wheels refused, why
    tags: dict[str, list[str]]  # the tag sets it computed (_TagCheck.known)
    rows: list[tuple]  # ProjectRow fields of each (target, project) it rendered
    written: list[str]  # what else it wrote there (relative paths): the wheels' .metadata, pages
    linked: list[tuple[str, _Copy]]  # pages it rendered that the live tree has: linked by _fill
    unused_yanks: list[int]  # the yank rules none of its projects' wheels match


def _targets_kept(targets: TargetSet) -> tuple[dict[str, render.TargetInfo], dict[str, list[str]]]:
    """What the scan cache keeps of the targets file (ScanCache.targets and .common)."""
    return ({n: _target_info(n, targets) for n in targets.targets},
            {n: sorted(t.common_tags()) for n, t in targets.targets.items()})


def _target_info(name: str, targets: TargetSet | None) -> render.TargetInfo:
    from ..targets import pip_target_args
    from . import render

    t = targets.targets.get(name) if targets else None
    if t is None:
        return render.TargetInfo(name=name)
    return render.TargetInfo(name=name, description=t.description, python=t.python,
                             platform=t.platform, glibc=t.glibc_str, site=t.site, provider=t.provider,
                             pip_target_args=tuple(pip_target_args(t)), machine=t.arch,
                             arch=t.architecture.label)


def _old_files(index_dir: Path) -> set[str]:
    if not index_dir.is_dir():
        return set()
    out: set[str] = set()
    top = str(index_dir)
    for dirpath, _dirs, files in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        out.update(prefix + f for f in files)
    return out


def _full_build(dist_dir: Path, index_dir: Path, work: _Work, published: dict[tuple[str, str], _Published],
                folders: list[str], remove: list[tuple[str, str]], fp: str, yanks: YankList,
                base_url: str | None, targets: TargetSet) -> IndexResult:
    """Every page recomputed, the tree `work` brought to what they say and swapped in.

    The work is split by project over worker processes (fanout.py): the sorted project names are
    cut into runs, and each run is taken by the next free worker with every dist folder of those
    names (on every target) and every published wheel of those projects; it scans the folders,
    admits their new wheels and copies them into `work`, then renders and writes the projects'
    own pages. What lists every project (root pages, landing page, state) is made here from the
    rows sent back. A wheel found in the folder of a project of another run is "stray" for the
    run that found it: see _strays."""
    from . import render  # before the fork: each worker renders

    for target, filename in remove:
        if (target, filename) not in published:
            raise IndexBuildError(f"cannot remove {target}/{filename}: it is not published in {index_dir}")
        del published[(target, filename)]
    removing = set(remove)
    published_files = {k: (p.entry.sha256, p.wheel) for k, p in published.items()}
    projects: dict[str, list[str]] = {}  # canonical name -> its dist folders, in folder order
    for folder in folders:
        projects.setdefault(canonical_name(folder.partition("/")[2]), []).append(folder)
    served: dict[str, list[WheelEntry]] = {}  # canonical name -> its published wheels
    for p in published.values():
        projects.setdefault(p.entry.project, [])
        served.setdefault(p.entry.project, []).append(p.entry)
    old_files = _old_files(index_dir)
    put = _Pages(index_dir, work, old_files, yanks, render.Links(base_url), base_url)

    check = _TagCheck(targets)  # one per process (a fork's copy): its tag sets are computed once

    def build_part(names: list[str]) -> _Part:
        mine = set(names)
        scanned, found = [], []
        for name in names:
            for folder in projects[name]:
                try:  # before it is scanned (see quick.seen), here rather than before the fork: 3,334 stats
                    mtime = os.stat(f"{dist_dir}/{folder}").st_mtime_ns
                except (FileNotFoundError, NotADirectoryError):  # removed since it was listed
                    continue
                seen = quick.seen(str(dist_dir), folder, mtime)
                cands, sk, failure = scan_project(dist_dir, folder, targets)
                for c in cands:
                    if (c.target, c.name) in removing:
                        raise IndexBuildError(f"cannot remove {c.target}/{c.name}: {c.path} would publish it "
                                              "again; delete it from dist first")
                found += cands
                scanned.append((folder, mtime, seen, sk, failure))
        refused, made = list[str](), set[str]()
        admitted = _admit(found, published_files, check, refused,
                          lambda n, data, st: work.put_wheel(n, data, st, made))
        entries = {name: list(served[name]) for name in names if name in served}
        strays = []
        for n in admitted.values():
            if n.entry.project in mine:
                entries.setdefault(n.entry.project, []).append(n.entry)
            else:
                strays.append(n.entry)
        failures = _failures(scanned, targets)
        written = [f"{e.target}/files/{e.project}/{e.filename}.metadata" for e in (n.entry for n in admitted.values())]
        rows, linked = put.projects(sorted(entries.keys() | {p for _t, p in failures}), entries, failures, written)
        unused = yanks.unused_rules([e for es in entries.values() for e in es] + strays) if yanks.rules else []
        return _Part(scanned, [f"{n.entry.target}/{n.entry.filename}" for n in admitted.values()],
                     [tuple(e) for e in strays], refused, check.known, rows, written, linked, unused)

    names = sorted(projects)
    workers = len(fanout.parts(names, work.workers))
    results = fanout.run_shared(build_part, fanout.runs(names, workers), workers)

    scanned = sorted(f for r in results for f in r.folders)  # in folder order, as one process would
    failures = _failures(scanned, targets)
    plan: dict[str, _Source] = {}
    for p in published.values():
        rel = f"{p.entry.target}/files/{p.entry.project}/{p.entry.filename}"
        plan[rel] = ("link", p.wheel)
        if p.metadata is not None:
            plan[rel + ".metadata"] = ("link", p.metadata)
        else:
            put.page(plan, rel + ".metadata", p.metadata_bytes or b"")
    added = sorted(name for r in results for name in r.added)
    written = [rel for r in results for rel in r.written]
    rows: dict[tuple[str, str], ProjectRow] = {}
    for r in results:
        for fields in r.rows:
            row = ProjectRow._make(fields)
            rows[(row.target, row.project)] = row
        plan.update(r.linked)
    strays = [WheelEntry._make(fields) for r in results for fields in r.strays]
    if strays:
        written = _strays(put, plan, written, rows, strays, failures)
    # A rule is unused if no run's wheels match it (every wheel is in one run: its project's, or as a stray)
    unused = sorted(set(range(len(yanks.rules))).intersection(*(r.unused_yanks for r in results)))
    state, state_data = _top_pages(put, plan, rows, failures, unused, targets)

    if old_files:  # changed: anything written, or the links (all of the plan but new bytes) are not the live tree
        unchanged = {rel for rel, src in plan.items() if not isinstance(src, bytes)}
        changed = bool(added or written) or len(unchanged) != len(plan) or unchanged != old_files
    else:  # a first build: nothing to compare with
        changed = bool(plan or added or written)
    # In the order written (deterministic; sorting 20,000 paths only to count them cost ~4 ms).
    rewritten = (*written, *(rel for rel, src in plan.items() if isinstance(src, bytes)))
    if changed:
        _fill(work, plan, written)
        swap.swap_in(work.path, index_dir)
    elif not work.spare:
        remove_tree(work.path)
    tree = hashlib.sha256(state_data).hexdigest()
    # Folders whose new wheels were refused by an error above are not recorded: rescanned next time.
    tags: dict[str, list[str]] = {}
    for r in results:
        tags.update(r.tags)
    incremental.write_scan_cache(index_dir, incremental.ScanCache(fp, tree, {
        folder: [mtime, sk, seen] for folder, mtime, seen, sk, _failure in scanned},
        incremental.summary(state), tags, *_targets_kept(targets)))
    return IndexResult(
        index_dir=index_dir,
        targets=tuple(sorted({t for t, _p in rows})),
        projects=len(rows),
        wheels=sum(row.wheels for row in rows.values()),
        added=tuple(added),
        removed=tuple(sorted(f"{t}/{f}" for t, f in remove)),
        skipped=tuple([line for f in scanned for line in f[3]] + [line for r in results for line in r.refused]),
        rewritten=rewritten,
        unused_yanks=tuple(yanks.rules[i].where for i in unused),
        changed=changed,
        seconds=0.0,
    )


def _failures(scanned: list[tuple[str, int, str | None, list[str], Failure | None]],
              targets: TargetSet) -> render.Failures:
    """(target, project) -> its failed newest build, from the scanned folders (in folder order)."""
    return {_folder_key(folder): failure for folder, _m, _s, _sk, failure in scanned
            if failure is not None and folder.partition("/")[0] in targets.targets}


@dataclass(frozen=True)
class _Work:
    """The tree a full build writes before swapping it in: a new folder beside the index, or the
    spare tree (the previous generation, never served) brought up to date. A file the spare
    holds may be a hard link shared with the live tree: it is unlinked, never written in place.
    Written by several worker processes at once (fanout.py); `made` is each one's record of the
    folders it made."""

    path: Path
    spare: bool
    existing: set[str]  # the files it held when the build started
    progress: Callable[[str], None] | None
    workers: int | None

    def _folder(self, rel: str, made: set[str]) -> None:
        folder = rel.rpartition("/")[0]
        if folder and folder not in made:
            _make_folder(f"{self.path}/{folder}")
            made.add(folder)

    def put(self, rel: str, data: bytes, made: set[str]) -> None:
        """A page (`data`) at `rel`, unless the tree holds these bytes there already."""
        dest = f"{self.path}/{rel}"
        if rel in self.existing:
            if _same_bytes(Path(dest), data):
                return
            os.unlink(dest)
        else:
            self._folder(rel, made)
        _put(dest, data)
        if self.progress and rel.endswith("/index.html") and "/simple/" in rel:
            self.progress(rel)

    def put_wheel(self, n: _New, data: bytes | None, st: os.stat_result, made: set[str]) -> None:
        """A new wheel (`data`: its bytes, None to copy it from dist) and its .metadata, right
        after its admission. A copy from dist must still have the hash admission saw."""
        rel = f"{n.entry.target}/files/{n.entry.project}/{n.entry.filename}"
        self._folder(rel, made)
        dest = f"{self.path}/{rel}"
        for path in (dest, dest + ".metadata") if self.spare else ():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        try:
            if data is None:
                with open(n.wheel, "rb") as src, open(dest, "xb") as out:
                    digest = hashlib.sha256()
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != n.entry.sha256:
                    raise IndexBuildError(f"{n.wheel} changed while it was being published; run the build again")
                os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                fd = _write_bytes(dest, data)
                try:  # as copy2 does: the upload-time of a wheel whose page is lost
                    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(fd)
            os.close(_write_bytes(dest + ".metadata", n.metadata_bytes))
        except OSError as exc:  # name the file being written, not the copy's source or nothing
            raise OSError(exc.errno, exc.strerror, dest) from exc


# Subtrees of the index written by other tools, carried over into every new tree.
KEPT_DIRS = ("report",)


@dataclass(frozen=True)
class _Pages:
    """Renders pages into the new tree (`work`); one that the live index holds with the same
    bytes is linked from there instead (a rebuild that changes nothing rewrites nothing)."""

    index_dir: Path
    work: _Work
    old_files: set[str]  # the live index's files: no stat of pages a first build cannot have
    yanks: YankList
    links: render.Links
    base_url: str | None

    def live(self, rel: str, data: bytes) -> _Copy | None:
        """("link", the live tree's file) when it holds `data` at `rel` already."""
        if rel in self.old_files:
            old = self.index_dir / rel
            if _same_bytes(old, data):
                return ("link", old)
        return None

    def page(self, plan: dict[str, _Source], rel: str, data: bytes) -> None:
        """A page the build makes in this process: planned, written by _fill."""
        plan[rel] = self.live(rel, data) or data

    def projects(self, names: list[str], entries: dict[str, list[WheelEntry]], failures: render.Failures,
                 written: list[str]) -> tuple[list[tuple], list[tuple[str, _Copy]]]:
        """Each project's simple pages (per target) and page for people, written into the new tree
        (added to `written`) unless the live tree has them (then returned, for _fill to link), and
        their rows (as plain tuples, see _Part). `entries`: every wheel of each project;
        `failures`: at least theirs."""
        from . import render

        rows: list[tuple] = []
        linked: list[tuple[str, _Copy]] = []
        made: set[str] = set()
        yanks, links = self.yanks, self.links

        def put(rel: str, data: bytes) -> None:
            old = self.live(rel, data)
            if old is not None:
                linked.append((rel, old))
            else:
                self.work.put(rel, data, made)
                written.append(rel)

        for name in names:
            mine = entries.get(name, [])
            by_target: dict[str, list[WheelEntry]] = {}
            for e in mine:
                by_target.setdefault(e.target, []).append(e)
            for target in sorted(by_target):
                wheels = by_target[target]
                put(f"{target}/simple/{name}/index.html", render.project_html(name, wheels, yanks, links))
                put(f"{target}/simple/{name}/index.json", render.project_json(name, wheels, yanks, links))
                rows.append(tuple(project_row(target, name, wheels, yanks)))
            put(f"project/{name}/index.html", render.project_page(name, mine, failures, yanks, self.base_url))
        return rows, linked


def _strays(pages: _Pages, plan: dict[str, _Source], written: list[str], rows: dict[tuple[str, str], ProjectRow],
            strays: list[WheelEntry], failures: render.Failures) -> list[str]:
    """Render again, here, the projects of wheels found in another project's dist folder.

    The worker owning such a project (the run of names holding it) rendered its pages without
    the wheels other workers found; its pages list every other wheel of it (published or new),
    so they are read back from the new tree and the strays added. Rare: dist/<target>/<project>/
    holds the wheels of <project> unless someone put another there. Returns `written` without
    the pages rendered again, then with their new copies."""
    work = pages.work
    dropped: set[str] = set()
    was_written = set(written)

    def drop(rel: str) -> None:  # a page the owner rendered (if any): rendered again below
        if plan.pop(rel, None) is None and rel in was_written:
            dropped.add(rel)
            if rel not in work.existing:  # this build's own file, which _fill would not replace
                os.unlink(work.path / rel)

    by_project: dict[str, list[WheelEntry]] = {}
    for e in strays:
        by_project.setdefault(e.project, []).append(e)
    entries: dict[str, list[WheelEntry]] = {}
    for name, extra in by_project.items():
        mine = entries[name] = list(extra)
        for target, project in [k for k in rows if k[1] == name]:
            rel = f"{target}/simple/{name}/index.json"
            src = plan.get(rel)  # linked from the live tree, or written into the new one
            mine += _page_entries(target, src[1] if isinstance(src, tuple) else work.path / rel)
            drop(rel)
            drop(f"{target}/simple/{name}/index.html")
            del rows[(target, project)]
        drop(f"project/{name}/index.html")
    written = [rel for rel in written if rel not in dropped]
    new_rows, linked = pages.projects(sorted(entries), entries, failures, written)
    for fields in new_rows:
        row = ProjectRow._make(fields)
        rows[(row.target, row.project)] = row
    plan.update(linked)
    return written


def _top_pages(pages: _Pages, plan: dict[str, _Source], rows: dict[tuple[str, str], ProjectRow],
               failures: render.Failures, unused_yanks: list[int], targets: TargetSet,
               ) -> tuple[incremental.State, bytes]:
    """The pages listing every project (root pages, constraints, landing page) and the state file,
    planned; files kept from the live index planned too. Returns the state and its bytes."""
    from . import render

    by_target: dict[str, list[str]] = {}
    for target, project in sorted(rows):
        by_target.setdefault(target, []).append(project)
    links = pages.links
    for target, names in by_target.items():
        pages.page(plan, f"{target}/simple/index.html", render.root_html(names, target, links))
        pages.page(plan, f"{target}/simple/index.json", render.root_json(names))
        pages.page(plan, f"{target}/constraints.txt",
                   render.constraints_from_rows(target, [rows[(target, n)] for n in names]))
    infos = [_target_info(t, targets) for t in sorted(set(by_target) | {t for t, _p in failures})]
    state = incremental.State(dict(sorted(rows.items())), dict(failures), unused_yanks)
    pages.page(plan, "index.html", render.landing_from_rows(infos, list(state.rows.values()), pages.base_url, failures))
    state_data = incremental.state_bytes(state)
    pages.page(plan, incremental.STATE_NAME, state_data)
    # Files a person put at the top (CNAME, robots.txt, .nojekyll) and the status page that
    # `invoke report` writes (report/) are kept as they are.
    index_dir = pages.index_dir
    if index_dir.is_dir():
        for extra in sorted(index_dir.iterdir()):
            if extra.is_file() and extra.name not in plan:
                plan[extra.name] = ("link", extra)
        for kept in KEPT_DIRS:
            for f in sorted((index_dir / kept).rglob("*")):
                if f.is_file():
                    plan[f.relative_to(index_dir).as_posix()] = ("link", f)
    return state, state_data


def _page_entries(target: str, page: Path) -> list[WheelEntry]:
    """The wheels a project's JSON page (as this build wrote it) lists."""
    return [_json_entry(target, info["filename"], info, info["size"]) for info in json.loads(page.read_bytes())["files"]]


def _put(dest: str, src: _Source) -> None:
    """Create `dest` (which must not exist) from new bytes, a hard link, or a copy."""
    try:
        _put_unnamed(dest, src)
    except OSError as exc:  # name the file being written, not the copy's source or nothing
        raise OSError(exc.errno, exc.strerror, dest) from exc


def _write_bytes(dest: str, data: bytes) -> int:
    """A new file holding `data` (os-level: tens of thousands of small files per full build);
    returns its descriptor, still open."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        done = os.write(fd, data)
        if done < len(data):  # a short write: the rest (a full disk raises on the next one)
            view = memoryview(data)[done:]
            while view:
                view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _put_unnamed(dest: str, src: _Source) -> None:
    if isinstance(src, bytes):
        os.close(_write_bytes(dest, src))
    else:
        try:
            os.link(src[1], dest)
        except OSError:  # filesystem without hard links
            import shutil

            shutil.copy2(src[1], dest)


def _is_current(dest: str, src: _Source) -> bool:
    """Whether `dest` in the spare tree already holds what the plan wants there."""
    try:
        if isinstance(src, bytes):
            return _same_bytes(Path(dest), src)
        a, b = os.stat(dest), os.stat(src[1])
        return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)
    except FileNotFoundError:
        return False


def _fill(work: _Work, plan: dict[str, _Source], written: list[str]) -> None:
    """Make the tree `work` hold exactly `plan` plus what the workers `written` into it already
    (and the new wheels, whose .metadata it names): files it held that neither names go, the rest
    of the plan is written by worker processes, each a contiguous run of the sorted paths (so
    mostly its own folders)."""
    top = work.path
    if work.existing:
        wheels = (rel.removesuffix(".metadata") for rel in written if rel.endswith(".whl.metadata"))
        for rel in sorted(work.existing.difference(plan, written, wheels)):
            os.unlink(f"{top}/{rel}")
    ops: list[tuple[str, _Source]] = []
    for rel, src in sorted(plan.items()):
        if rel in work.existing and not isinstance(src, bytes):  # (bytes: Work.put checks)
            if _is_current(f"{top}/{rel}", src):
                continue
            os.unlink(f"{top}/{rel}")
        ops.append((rel, src))

    def put_all(part: list[tuple[str, _Source]]) -> None:
        made: set[str] = set()
        for rel, src in part:
            if isinstance(src, bytes):
                work.put(rel, src, made)
            else:
                work._folder(rel, made)
                _put(f"{top}/{rel}", src)

    fanout.run(put_all, fanout.parts(ops, work.workers))  # the first error (disk full...) stops the build
    if work.existing:  # folders left empty by removed files (an empty folder would be served as a listing)
        for dirpath, _dirs, files in os.walk(top, topdown=False):
            if dirpath != str(top) and not files and not os.listdir(dirpath):
                os.rmdir(dirpath)


def _make_folder(path: str) -> None:
    """`path` and its parents, one mkdir when only the last is missing (the common case: the
    paths come sorted). Another worker may make the same folder at the same time."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def _work_tree(index_dir: Path, progress: Callable[[str], None] | None, workers: int | None) -> _Work:
    """Where a full build writes its new tree.

    The previous live tree is kept as the spare (`.<name>.spare`) after a swap; the next build
    brings the spare up to date, touching only what differs, instead of recreating every file.
    Otherwise a new folder beside the index. A crash while either is written leaves the live
    tree as it was.
    """
    spare = swap.spare_dir(index_dir)
    if spare.is_dir() and index_dir.is_dir():
        return _Work(spare, True, _old_files(spare), progress, workers)
    work = swap.building_dir(index_dir)
    if work.exists():
        remove_tree(work)
    work.mkdir(parents=True)
    return _Work(work, False, set(), progress, workers)

