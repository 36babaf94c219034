"""Plan a requirement's closure for one target: what pip would install there, and what we must build.

The closure is resolved with the target's own interpreter facts (marker environment, Python
version, wheel tags up to its glibc floor) against the package index's metadata. Every
distribution lands in one bucket:

- ``pure``           a ``py3-none-any`` wheel and no binary wheels at all: install from the index
- ``binary``         a binary wheel usable on the target is already published
- ``pure-fallback``  binary wheels exist, none for this target, but the release also ships a pure
                     wheel (optional speedups): pip installs that one
- ``must-build``     no wheel the target can install: we build it (or pip needs an sdist)

The resolver is deliberately simple: breadth-first, newest version allowed by every specifier
seen so far, restarting with the extra specifier when a later requirement rules out an earlier
pick. A constraints file (``NAME==VERSION`` lines) or a date cut-off makes it reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, NormalizedName, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)
from packaging.version import Version

from .errors import ConfigError, PlanError
from .fsutil import atomic_write
from .pypi import IndexClient, IndexFile, sdist_members
from .targets import Target

PURE, BINARY, FALLBACK, BUILD = "pure", "binary", "pure-fallback", "must-build"
BUCKETS = (PURE, BINARY, FALLBACK, BUILD)
NATIVE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".pyx", ".rs", "/Cargo.toml", ".f90", ".go")

@dataclass(frozen=True)
class PlanEntry:
    name: str
    version: str
    bucket: str
    reason: str
    wheel: str | None = None  # the file pip picks on the target (None: none fits)
    sdist: str | None = None
    sdist_url: str | None = None
    sdist_sha256: str | None = None
    required_by: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    requirement: str
    target: str
    python: str
    platform: str
    glibc: str
    index_url: str
    cutoff: str | None
    constraints: str | None
    entries: tuple[PlanEntry, ...]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def bucket(self, name: str) -> list[PlanEntry]:
        return [e for e in self.entries if e.bucket == name]

    @property
    def must_build(self) -> list[PlanEntry]:
        return self.bucket(BUILD)

    def get(self, name: str) -> PlanEntry:
        cname = canonicalize_name(name)
        for e in self.entries:
            if e.name == cname:
                return e
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = {b: len(self.bucket(b)) for b in BUCKETS}
        return data

    def constraints_text(self) -> str:
        head = (f"# {self.requirement} for target {self.target} (CPython {self.python}, {self.platform}, "
                f"glibc {self.glibc}); {len(self.entries)} distributions, written by `invoke plan`\n")
        return head + "".join(f"{e.name}=={e.version}\n" for e in self.entries)


# -- inputs ---------------------------------------------------------------------------------

def read_constraints(path: Path) -> dict[NormalizedName, Version]:
    """`NAME==VERSION` lines (comments and blank lines ignored) as pins."""
    pins: dict[NormalizedName, Version] = {}
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: constraints file not found") from None
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ConfigError(f"{path}:{number}: {line!r} is not a requirement: {exc}") from None
        exact = [s for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if len(exact) != 1:
            raise ConfigError(f"{path}:{number}: {line!r} must pin one exact version (NAME==VERSION)")
        pins[canonicalize_name(req.name)] = Version(exact[0].version)
    return pins


def parse_cutoff(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"cut-off {value!r} is not an ISO date like 2025-04-11 or 2025-04-11T00:30:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


# -- file facts -----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _filename_version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def _file_version(f: IndexFile) -> Version | None:
    return _filename_version(f.filename) if f.is_wheel or f.is_sdist else None


@lru_cache(maxsize=None)
def _tags_of(filename: str) -> frozenset[Tag]:
    return parse_wheel_filename(filename)[3]


def _wheel_tags(f: IndexFile) -> frozenset[Tag]:
    return _tags_of(f.filename)


@lru_cache(maxsize=None)
def _specifier(text: str) -> SpecifierSet | None:
    try:
        return SpecifierSet(text)
    except ValueError:
        return None  # pip ignores a broken Requires-Python too


def _is_pure(f: IndexFile) -> bool:
    return f.is_wheel and all(t.platform == "any" for t in _wheel_tags(f))


class _Index:
    """Per-target view of the index: versions, compatible files, metadata."""

    def __init__(self, client: IndexClient, target: Target, cutoff: datetime | None) -> None:
        self.client, self.target, self.cutoff = client, target, cutoff
        self.rank = {tag: i for i, tag in enumerate(target.supported_tags())}
        self.py = Version(target.marker_environment()["python_full_version"])
        self._files: dict[str, dict[Version, list[IndexFile]]] = {}

    def releases(self, name: str) -> dict[Version, list[IndexFile]]:
        if name not in self._files:
            by_version: dict[Version, list[IndexFile]] = {}
            for f in self.client.files(name):
                v = _file_version(f)
                if v is None:
                    continue
                by_version.setdefault(v, []).append(f)
            self._files[name] = by_version
        return self._files[name]

    def usable(self, f: IndexFile) -> bool:
        """Whether the target's pip may pick this file at all (Requires-Python, cut-off)."""
        spec = _specifier(f.requires_python) if f.requires_python else None
        if spec is not None and not spec.contains(self.py, prereleases=True):
            return False
        return not (self.cutoff and f.upload_time and f.upload_time > self.cutoff)

    def best_wheel(self, files: Iterable[IndexFile]) -> IndexFile | None:
        best, best_rank = None, len(self.rank)
        for f in files:
            if not f.is_wheel:
                continue
            ranks = [self.rank[t] for t in _wheel_tags(f) if t in self.rank]
            if ranks and min(ranks) < best_rank:
                best, best_rank = f, min(ranks)
        return best

    def installable(self, files: list[IndexFile]) -> bool:
        return any(f.is_sdist for f in files) or self.best_wheel(files) is not None


# -- resolution -----------------------------------------------------------------------------

@dataclass
class _Node:
    name: NormalizedName
    version: Version
    files: list[IndexFile]
    requires: list[Requirement]
    extras: set[str] = field(default_factory=set)
    required_by: set[str] = field(default_factory=set)


class _Restart(Exception):
    def __init__(self, name: NormalizedName, spec: SpecifierSet, why: str) -> None:
        super().__init__(why)
        self.name, self.spec, self.why = name, spec, why


class _Resolver:
    def __init__(self, index: _Index, pins: dict[NormalizedName, Version], workers: int = 16) -> None:
        self.index, self.pins, self.workers = index, pins, workers
        self.env = index.target.marker_environment()
        self.learned: dict[NormalizedName, SpecifierSet] = {}

    def _choose(self, name: NormalizedName, spec: SpecifierSet, parent: str) -> tuple[Version, list[IndexFile]]:
        releases = self.index.releases(name)
        if name in self.pins:
            v = self.pins[name]
            if v not in spec:
                raise PlanError(f"the constraints pin {name}=={v}, but {parent} requires {name}{spec}; "
                                "fix the constraints file")
            files = [f for f in releases.get(v, []) if self.index.usable(f)]  # yanked is fine when pinned
            if not files:
                why = "no file on the index" if v not in releases else (
                    f"no file for CPython {self.index.target.python} (Requires-Python "
                    f"{releases[v][0].requires_python})")
                raise PlanError(f"{name}=={v} (pinned by the constraints) has {why}; "
                                f"the constraints do not fit target {self.index.target.name}")
            return v, files
        # Final releases first; pre-releases only when the specifier names one or nothing else fits (as pip).
        for pre in (bool(spec.prereleases), True):
            for v in sorted(releases, reverse=True):
                if not spec.contains(v, prereleases=pre):
                    continue
                files = [f for f in releases[v] if not f.yanked and self.index.usable(f)]
                if files and self.index.installable(files):
                    return v, files
        cut = f" uploaded before {self.index.cutoff:%Y-%m-%d}" if self.index.cutoff else ""
        raise PlanError(f"no release of {name} matches {spec or 'any version'}{cut} for CPython "
                        f"{self.index.target.python} on {self.index.target.name} (required by {parent})")

    def _requires(self, node_files: list[IndexFile], name: str, version: Version) -> list[Requirement]:
        files = sorted(node_files, key=lambda f: (self.index.best_wheel([f]) is None, not f.is_wheel))
        meta = self.index.client.metadata(files[0])
        out = []
        for line in meta.get_all("Requires-Dist") or []:
            try:
                out.append(Requirement(line))
            except InvalidRequirement as exc:
                raise PlanError(f"{name}=={version}: bad Requires-Dist {line!r} in its metadata: {exc}") from None
        return out

    def _active(self, req: Requirement, extras: set[str]) -> bool:
        if req.marker is None:
            return True
        return any(req.marker.evaluate({**self.env, "extra": e}) for e in ({""} | extras))

    def resolve(self, roots: list[Requirement]) -> dict[NormalizedName, _Node]:
        for _ in range(50):
            try:
                return self._attempt(roots)
            except _Restart as r:
                self.learned[r.name] = self.learned.get(r.name, SpecifierSet()) & r.spec
        raise PlanError("the resolver gave up after 50 restarts; pass a constraints file (--constraints)")

    def _attempt(self, roots: list[Requirement]) -> dict[NormalizedName, _Node]:
        nodes: dict[NormalizedName, _Node] = {}
        specs: dict[NormalizedName, SpecifierSet] = dict(self.learned)
        wave: list[tuple[Requirement, str]] = [(r, "<root>") for r in roots]
        pending_extras: dict[NormalizedName, set[str]] = {}
        pending_parents: dict[NormalizedName, set[str]] = {}
        with ThreadPoolExecutor(self.workers) as pool:
            while wave:
                new: dict[NormalizedName, str] = {}
                grown: list[_Node] = []
                for req, parent in wave:
                    name = canonicalize_name(req.name)
                    specs[name] = specs.get(name, SpecifierSet()) & req.specifier
                    extras = {canonicalize_name(e) for e in req.extras}
                    if name in nodes:
                        node = nodes[name]
                        node.required_by.add(parent)
                        if node.version not in specs[name]:
                            if name in self.pins:
                                raise PlanError(f"the constraints pin {name}=={node.version}, but {parent} "
                                                f"requires {req}; fix the constraints file")
                            raise _Restart(name, req.specifier, f"{parent} requires {req}")
                        if extras - node.extras:
                            node.extras |= extras
                            grown.append(node)
                    else:
                        new.setdefault(name, parent)
                        pending_extras.setdefault(name, set()).update(extras)
                        pending_parents.setdefault(name, set()).add(parent)
                names = list(new)
                picks = list(pool.map(self._choose, names, [specs[n] for n in names], [new[n] for n in names]))
                chosen = dict(zip(names, picks, strict=True))
                metas = list(pool.map(self._requires, [p[1] for p in picks], names, [p[0] for p in picks]))
                reqs = dict(zip(names, metas, strict=True))
                wave = []
                for name in new:
                    version, files = chosen[name]
                    node = _Node(name, version, files, reqs[name], extras=pending_extras.pop(name),
                                 required_by=pending_parents.pop(name))
                    nodes[name] = node
                    grown.append(node)
                for node in grown:
                    label = f"{node.name}=={node.version}"
                    wave += [(r, label) for r in node.requires if self._active(r, node.extras)]
        return nodes


def _classify(node: _Node, index: _Index) -> PlanEntry:
    files = node.files
    target = index.target
    best = index.best_wheel(files)
    binaries = [f for f in files if f.is_wheel and not _is_pure(f)]
    sdists = [f for f in files if f.is_sdist]
    sdist = sdists[0] if sdists else None
    where = f"cp{target.python.replace('.', '')}-{target.platform} with glibc {target.glibc_str}"
    if best is not None and not _is_pure(best):
        bucket, reason = BINARY, f"published wheel fits {where}"
    elif best is not None and not binaries:
        bucket, reason = PURE, "pure Python wheel"
    elif best is not None:
        bucket, reason = FALLBACK, f"binary wheels exist but none for {where}; the pure wheel is used"
    else:
        bucket = BUILD
        arch = [f.filename for f in binaries if target.arch in f.filename and target.cp in f.filename]
        arch = arch or [f.filename for f in binaries if target.arch in f.filename and "abi3" in f.filename]
        if arch:
            reason = f"{target.arch} wheels published ({arch[0]}) but none fits {where}"
        elif binaries:
            reason = f"binary wheels for other platforms only; none for {where}"
        elif sdist is None:
            reason = "no sdist and no wheel for this target on the index"
        else:
            members = sdist_members(index.client.download(sdist), sdist.filename)
            native = sorted({m.rsplit(".", 1)[-1] for m in members if m.endswith(NATIVE_SUFFIXES)})
            reason = (f"sdist only, with native sources (.{', .'.join(native)})" if native
                      else "sdist only (pure Python): needs a wheel built once for --only-binary installs")
    return PlanEntry(
        name=node.name, version=str(node.version), bucket=bucket, reason=reason,
        wheel=best.filename if best else None,
        sdist=sdist.filename if sdist else None, sdist_url=sdist.url if sdist else None,
        sdist_sha256=sdist.sha256 if sdist else None,
        required_by=tuple(sorted(node.required_by)), extras=tuple(sorted(node.extras)),
    )


def plan(requirement: str, target: Target, constraints: Path | None = None, cutoff: str | datetime | None = None,
         client: IndexClient | None = None, cache_dir: Path | None = None) -> Plan:
    """Resolve `requirement`'s closure for `target` and bucket every distribution."""
    try:
        root = Requirement(requirement)
    except InvalidRequirement as exc:
        raise ConfigError(f"{requirement!r} is not a requirement: {exc}") from None
    if client is None:
        from .paths import default_cache_dir
        client = IndexClient(cache_dir or default_cache_dir())
    when = cutoff if isinstance(cutoff, datetime) or cutoff is None else parse_cutoff(cutoff)
    if isinstance(when, datetime) and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    pins = read_constraints(constraints) if constraints else {}
    index = _Index(client, target, when)
    nodes = _Resolver(index, pins).resolve([root])
    entries = sorted((_classify(n, index) for n in nodes.values()), key=lambda e: e.name)
    return Plan(
        requirement=str(root), target=target.name, python=target.python, platform=target.platform,
        glibc=target.glibc_str, index_url=client.index_url,
        cutoff=when.isoformat() if when else None, constraints=str(constraints) if constraints else None,
        entries=tuple(entries),
    )


# -- outputs --------------------------------------------------------------------------------

_write_atomic = atomic_write  # plan.json and constraints files


def write_json(p: Plan, path: Path) -> None:
    _write_atomic(path, json.dumps(p.to_dict(), indent=2) + "\n")


def write_constraints(p: Plan, path: Path) -> None:
    _write_atomic(path, p.constraints_text())


STYLE = {PURE: "green", BINARY: "cyan", FALLBACK: "yellow", BUILD: "bold red"}


def render(p: Plan, console: Any = None) -> None:
    """Print the plan as a table (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{p.requirement} on {p.target} (CPython {p.python}, {p.platform}, glibc {p.glibc})")
    for col in ("distribution", "version", "bucket", "file / reason"):
        table.add_column(col)
    order = {b: i for i, b in enumerate((BUILD, FALLBACK, BINARY, PURE))}
    for e in sorted(p.entries, key=lambda e: (order[e.bucket], e.name)):
        detail = e.reason if e.bucket == BUILD else (e.wheel or e.reason)
        table.add_row(e.name, e.version, f"[{STYLE[e.bucket]}]{e.bucket}[/]", detail)
    console.print(table)
    counts = ", ".join(f"{len(p.bucket(b))} {b}" for b in BUCKETS)
    console.print(f"{len(p.entries)} distributions: {counts}")
    console.print("must build: " + (", ".join(f"{e.name}=={e.version}" for e in p.must_build) or "nothing"))
