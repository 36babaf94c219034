"""Plan a requirement's closure for one target: what pip would install there, and what we must build.

The closure is resolved with the target's own interpreter facts (marker environment, Python
version, wheel tags up to its glibc floor) against the package index's metadata. Every
distribution lands in one bucket:

- ``pure``           a ``py3-none-any`` wheel and no binary wheels at all: install from the index
- ``binary``         a binary wheel usable on the target is already published
- ``pure-fallback``  binary wheels exist, none for this target, but the release also ships a pure
                     wheel (optional speedups): pip installs that one
- ``must-build``     no wheel the target can install: we build it (or pip needs an sdist)

The search is pip's own resolver library, resolvelib (newest release first, backtracking on a
conflict); what is target-specific lives in its provider here. A constraints file
(``NAME==VERSION`` lines) or a date cut-off makes the result reproducible.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version
from resolvelib import AbstractProvider, BaseReporter, ResolutionImpossible, ResolutionTooDeep, Resolver
from resolvelib.structs import RequirementInformation

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
    recipe: str | None = None  # must-builds: the version of packages/<name>/recipe.toml (None: no recipe)

    @property
    def recipe_status(self) -> str:
        """For a must-build: "no recipe", "recipe" (same version) or "recipe X (planned Y)"."""
        if self.bucket != BUILD:
            return ""
        if self.recipe is None:
            return "no recipe"
        return "recipe" if self.recipe == self.version else f"recipe {self.recipe} (planned {self.version})"


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
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

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
        for entry, e in zip(data["entries"], self.entries, strict=True):
            if e.bucket == BUILD:  # whether packages/ can build it, and at the planned version
                entry["recipe_matches"] = e.recipe == e.version
        return data

    def with_recipes(self, recipes: dict[str, str]) -> Plan:
        """The plan with each must-build marked by its recipe's version (`recipes`: name -> version)."""
        entries = tuple(replace(e, recipe=recipes.get(e.name)) if e.bucket == BUILD else e for e in self.entries)
        return replace(self, entries=entries)

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
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- file facts -----------------------------------------------------------------------------

@cache
def _filename_version(filename: str, name: str | None = None) -> Version | None:
    """The version in a wheel's or sdist's file name; None if it does not parse or (given `name`)
    names another project: an old sdist such as `PyMuPDF-1.14.19.post-2.tar.gz` parses as
    project `pymupdf-1-14-19-post`, version 2, which must not pass for pymupdf 2(.0)."""
    try:
        if filename.endswith(".whl"):
            project, version = parse_wheel_filename(filename)[:2]
        else:
            project, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    if name is not None and project != canonicalize_name(name):
        return None
    return version


def _file_version(f: IndexFile) -> Version | None:
    return _filename_version(f.filename) if f.is_wheel or f.is_sdist else None


@cache
def _tags_of(filename: str) -> frozenset[Tag]:
    return parse_wheel_filename(filename)[3]


def _wheel_tags(f: IndexFile) -> frozenset[Tag]:
    return _tags_of(f.filename)


@cache
def _specifier(text: str) -> SpecifierSet | None:
    try:
        return SpecifierSet(text)
    except ValueError:
        return None  # pip ignores a broken Requires-Python too


def _is_pure(f: IndexFile) -> bool:
    return f.is_wheel and all(t.platform == "any" for t in _wheel_tags(f))


class _Index:
    """Per-target view of the index: versions, compatible files, dependencies.

    Project pages and metadata are fetched on a thread pool: when a release's dependencies are
    known, their pages (and the newest matching release's metadata) are requested ahead, so the
    one-at-a-time resolver rarely waits on the network. Workers never wait on each other.
    """

    def __init__(self, client: IndexClient, target: Target, cutoff: datetime | None, pool: ThreadPoolExecutor) -> None:
        self.client, self.target, self.cutoff, self.pool = client, target, cutoff, pool
        self.rank = {tag: i for i, tag in enumerate(target.supported_tags())}
        self.py = Version(target.marker_environment()["python_full_version"])
        self._lock = threading.Lock()
        self._pages: dict[NormalizedName, Future[dict[Version, list[IndexFile]]]] = {}
        self._requires: dict[tuple[NormalizedName, Version], Future[list[Requirement]]] = {}

    def _load_page(self, name: NormalizedName) -> dict[Version, list[IndexFile]]:
        by_version: dict[Version, list[IndexFile]] = {}
        for f in self.client.files(name):
            v = _file_version(f)
            if v is not None:
                by_version.setdefault(v, []).append(f)
        return by_version

    def _page(self, name: NormalizedName) -> Future[dict[Version, list[IndexFile]]]:
        with self._lock:
            if name not in self._pages:
                self._pages[name] = self.pool.submit(self._load_page, name)
            return self._pages[name]

    def releases(self, name: NormalizedName) -> dict[Version, list[IndexFile]]:
        return self._page(name).result()

    def prefetch(self, name: NormalizedName, spec: SpecifierSet) -> None:
        """Start fetching `name`'s page, then the metadata of its newest release within `spec`."""
        def ahead(page: Future[dict[Version, list[IndexFile]]]) -> None:
            if page.exception() is not None:
                return  # the resolver meets the same error when (if) it needs this page
            versions = [v for v, files in page.result().items() if self.choosable(files)]
            newest = max(spec.filter(versions), default=None)
            if newest is not None:
                self._requires_future(name, newest, page.result()[newest])
        self._page(name).add_done_callback(ahead)

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

    def choosable(self, files: list[IndexFile]) -> list[IndexFile]:
        """The files of a release pip may pick on the target ([] when none: not yanked, usable, installable)."""
        ok = [f for f in files if not f.yanked and self.usable(f)]
        return ok if ok and self.installable(ok) else []

    def _read_requires(self, name: NormalizedName, version: Version, files: list[IndexFile]) -> list[Requirement]:
        # the file the target would install says it best; any wheel next; the sdist last
        first = sorted(files, key=lambda f: (self.best_wheel([f]) is None, not f.is_wheel))[0]
        out = []
        for line in self.client.metadata(first).requires_dist:
            try:
                out.append(Requirement(line))
            except InvalidRequirement as exc:
                raise PlanError(f"{name}=={version}: bad Requires-Dist {line!r} in its metadata: {exc}") from None
        return out

    def _requires_future(self, name: NormalizedName, version: Version,
                         files: list[IndexFile]) -> Future[list[Requirement]]:
        with self._lock:
            key = (name, version)
            if key not in self._requires:
                self._requires[key] = self.pool.submit(self._read_requires, name, version, files)
            return self._requires[key]

    def requires(self, name: NormalizedName, version: Version, files: list[IndexFile]) -> list[Requirement]:
        """Requires-Dist of one release (from the metadata of the file the target would install)."""
        return self._requires_future(name, version, files).result()


# -- resolution -----------------------------------------------------------------------------
#
# resolvelib (pip's resolver) does the search, with backtracking; the provider below brings the
# target: which releases exist for it (tags up to its glibc, its Requires-Python, the cut-off,
# the constraints' pins) and which dependencies are active (markers with its Python). Extras are
# resolved as pip does: `name[extra]` is its own identifier that pins `name` to the same version.

def _key(name: NormalizedName, extras: frozenset[str]) -> str:
    return f"{name}[{','.join(sorted(extras))}]" if extras else name


@dataclass(frozen=True)
class _Req:
    """One dependency edge as the resolver sees it."""

    name: NormalizedName
    extras: frozenset[str]
    specifier: SpecifierSet
    text: str  # as written, for messages

    @classmethod
    def of(cls, req: Requirement) -> _Req:
        return cls(canonicalize_name(req.name), frozenset(canonicalize_name(e) for e in req.extras),
                   req.specifier, str(req))


@dataclass(frozen=True, eq=False)  # identity: resolvelib maps parents back to pins by identity
class _Candidate:
    name: NormalizedName
    version: Version
    files: tuple[IndexFile, ...]
    extras: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class _Node:
    name: NormalizedName
    version: Version
    files: list[IndexFile]
    extras: set[str] = field(default_factory=set)
    required_by: set[str] = field(default_factory=set)


class _Provider(AbstractProvider[_Req, _Candidate, str]):
    def __init__(self, index: _Index, pins: dict[NormalizedName, Version]) -> None:
        self.index, self.pins = index, pins
        self.env = index.target.marker_environment()
        self.no_release: dict[NormalizedName, str] = {}  # why a project had no candidate at all
        self._candidates: dict[str, list[_Candidate]] = {}

    def identify(self, requirement_or_candidate: _Req | _Candidate) -> str:
        return _key(requirement_or_candidate.name, requirement_or_candidate.extras)

    def get_preference(self, identifier: str, resolutions: Mapping[str, _Candidate],
                       candidates: Mapping[str, Iterator[_Candidate]],
                       information: Mapping[str, Iterator[RequirementInformation[_Req, _Candidate]]],
                       backtrack_causes: Sequence[RequirementInformation[_Req, _Candidate]]) -> Any:
        infos = list(information[identifier])
        name = infos[0].requirement.name if infos else identifier
        caused = any(c.requirement.name == name for c in backtrack_causes)
        pinned = name in self.pins or any(s.operator in ("==", "===") for i in infos for s in i.requirement.specifier)
        root = any(i.parent is None for i in infos)
        # conflicts first (so backtracking moves the right pick), then what can only be one release
        return (not caused, not pinned, not root, identifier)

    def _all(self, req: _Req) -> list[_Candidate]:
        """Every release pip could install on the target, newest first (pins: only the pinned one)."""
        key = _key(req.name, req.extras)
        if key in self._candidates:
            return self._candidates[key]
        releases = self.index.releases(req.name)
        out: list[_Candidate] = []
        if req.name in self.pins:
            v = self.pins[req.name]
            files = [f for f in releases.get(v, []) if self.index.usable(f)]  # yanked is fine when pinned
            if files:
                out.append(_Candidate(req.name, v, tuple(files), req.extras))
            else:
                why = "no file on the index" if v not in releases else (
                    f"no file for CPython {self.index.target.python} (Requires-Python "
                    f"{releases[v][0].requires_python})")
                self.no_release[req.name] = (f"{req.name}=={v} (pinned by the constraints) has {why}; "
                                             f"the constraints do not fit target {self.index.target.name}")
        else:
            for v in sorted(releases, reverse=True):
                files = self.index.choosable(releases[v])
                if files:
                    out.append(_Candidate(req.name, v, tuple(files), req.extras))
        self._candidates[key] = out
        return out

    def find_matches(self, identifier: str, requirements: Mapping[str, Iterator[_Req]],
                     incompatibilities: Mapping[str, Iterator[_Candidate]]) -> list[_Candidate]:
        reqs = list(requirements[identifier])
        spec = SpecifierSet()
        for r in reqs:
            spec &= r.specifier
        everything = self._all(reqs[0])
        # pre-releases only when a specifier names one or no final release fits (as pip)
        allowed = set(spec.filter([c.version for c in everything]))
        bad = {c.version for c in incompatibilities[identifier]}
        return [c for c in everything if c.version in allowed and c.version not in bad]

    def is_satisfied_by(self, requirement: _Req, candidate: _Candidate) -> bool:
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def _active(self, req: Requirement, extras: frozenset[str]) -> bool:
        if extras:  # the extra's own additions; the plain ones come with the base release
            return req.marker is not None and any(req.marker.evaluate({**self.env, "extra": e}) for e in extras)
        return req.marker is None or req.marker.evaluate({**self.env, "extra": ""})

    def get_dependencies(self, candidate: _Candidate) -> list[_Req]:
        deps = [_Req.of(r) for r in self.index.requires(candidate.name, candidate.version, list(candidate.files))
                if self._active(r, candidate.extras)]
        if candidate.extras:
            deps.append(_Req(candidate.name, frozenset(), SpecifierSet(f"=={candidate.version}"), str(candidate)))
        for d in deps:
            self.index.prefetch(d.name, d.specifier)
        return deps

    def explain(self, causes: Collection[RequirementInformation[_Req, _Candidate]]) -> str:
        """One line for a resolution that cannot succeed: which requirements meet, and why."""
        by_name: dict[NormalizedName, list[RequirementInformation[_Req, _Candidate]]] = {}
        for c in causes:
            by_name.setdefault(c.requirement.name, []).append(c)
        target = self.index.target
        cut = f" uploaded before {self.index.cutoff:%Y-%m-%d}" if self.index.cutoff else ""
        parts = []
        for name, infos in by_name.items():
            edges = "; ".join(sorted({f"{i.parent or '<root>'} requires {i.requirement.text}" for i in infos}))
            spec = SpecifierSet()
            for i in infos:
                spec &= i.requirement.specifier
            if name in self.no_release:
                parts.append(f"{self.no_release[name]} ({edges})")
            elif name in self.pins:
                parts.append(f"the constraints pin {name}=={self.pins[name]}, but {edges}; fix the constraints file")
            else:
                parts.append(f"no release of {name} matches {spec or 'any version'}{cut} for CPython "
                             f"{target.python} on {target.name} ({edges})")
        return "; ".join(parts)


def _resolve(index: _Index, pins: dict[NormalizedName, Version], root: Requirement,
             max_rounds: int = 20000) -> dict[NormalizedName, _Node]:
    provider = _Provider(index, pins)
    try:
        result = Resolver(provider, BaseReporter()).resolve([_Req.of(root)], max_rounds=max_rounds)
    except ResolutionImpossible as exc:
        raise PlanError(provider.explain(exc.causes)) from None
    except ResolutionTooDeep:
        raise PlanError(f"{root}: no resolution for {index.target.name} after {max_rounds} resolver rounds; "
                        "pass a constraints file (--constraints) or a cut-off (--cutoff)") from None
    nodes: dict[NormalizedName, _Node] = {}
    for key, cand in sorted(result.mapping.items(), key=lambda kv: bool(kv[1].extras)):  # base releases first
        node = nodes.setdefault(cand.name, _Node(cand.name, cand.version, list(cand.files)))
        node.extras |= cand.extras
        for parent in result.graph.iter_parents(key):
            label = "<root>" if parent is None else str(result.mapping[parent])
            if parent is None or result.mapping[parent].name != cand.name:  # not the extra's own edge
                node.required_by.add(label)
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
        when = when.replace(tzinfo=UTC)
    pins = read_constraints(constraints) if constraints else {}
    with ThreadPoolExecutor(16) as pool:
        index = _Index(client, target, when, pool)
        try:
            nodes = _resolve(index, pins, root)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # fetches made ahead and never needed
        entries = sorted((_classify(n, index) for n in nodes.values()), key=lambda e: e.name)
    return Plan(
        requirement=str(root), target=target.name, python=target.python, platform=target.platform,
        glibc=target.glibc_str, index_url=client.index_url,
        cutoff=when.isoformat() if when else None, constraints=str(constraints) if constraints else None,
        entries=tuple(entries),
    )


# -- outputs --------------------------------------------------------------------------------

def write_json(p: Plan, path: Path) -> None:
    atomic_write(path, json.dumps(p.to_dict(), indent=2) + "\n")


def write_constraints(p: Plan, path: Path) -> None:
    atomic_write(path, p.constraints_text())


STYLE = {PURE: "green", BINARY: "cyan", FALLBACK: "yellow", BUILD: "bold red"}


def render(p: Plan, console: Any = None) -> None:
    """Print the plan as a table (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{p.requirement} on {p.target} (CPython {p.python}, {p.platform}, glibc {p.glibc})")
    for col in ("distribution", "version", "bucket", "recipe", "file / reason"):
        table.add_column(col)
    order = {b: i for i, b in enumerate((BUILD, FALLBACK, BINARY, PURE))}
    for e in sorted(p.entries, key=lambda e: (order[e.bucket], e.name)):
        detail = e.reason if e.bucket == BUILD else (e.wheel or e.reason)
        table.add_row(e.name, e.version, f"[{STYLE[e.bucket]}]{e.bucket}[/]", e.recipe_status, detail)
    console.print(table)
    counts = ", ".join(f"{len(p.bucket(b))} {b}" for b in BUCKETS)
    console.print(f"{len(p.entries)} distributions: {counts}")
    console.print("must build: " + (", ".join(f"{e.name}=={e.version}" for e in p.must_build) or "nothing"))
    if p.must_build:
        ready = [e for e in p.must_build if e.recipe == e.version]
        console.print(f"recipes: {len(ready)} of {len(p.must_build)} must-builds have one at the planned version"
                      + "".join(f"; {e.name}: {e.recipe_status}" for e in p.must_build if e.recipe != e.version))
