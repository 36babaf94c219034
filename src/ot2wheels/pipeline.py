"""Wire the steps together for many recipes and targets: what nox sessions and tasks call.

Keeps going past a failed build (every build keeps its log and record) and reports every
failure at the end, so one broken recipe does not hide the state of the others.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import locks, records, stale
from .build import BuildResult, build_one, record_lock_name
from .errors import ConfigError, RecordError
from .ledger import Ledger, default_path
from .options import RunOptions
from .paths import Layout
from .recipes import ClosureRecipe, Recipe, build_matrix, load_each
from .records import Outcome
from .smoke import SmokeResult, smoke_many
from .targets import Target, TargetSet, load_targets
from .toolchains import get_toolchain

Say = Callable[[str], None]


@dataclass
class Project:
    """Recipes and targets of one checkout, loaded and cross-checked once."""

    layout: Layout
    targets: TargetSet
    recipes: dict[str, Recipe]
    closures: dict[str, ClosureRecipe] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # recipe folder -> why it does not load

    @classmethod
    def load(cls, layout: Layout | None = None, strict: bool = True) -> Project:
        """The checkout's targets and recipes; with `strict=False` a broken recipe is kept in
        `broken` (its builds fail with the error) instead of failing the whole load."""
        layout = layout or Layout.discover()
        targets = load_targets(layout.targets_file)
        found = load_each(layout.packages, set(targets.targets))
        if strict:
            found.strict()
        return cls(layout, targets, found.recipes, found.closures, found.errors)

    def recipe(self, name: str) -> Recipe:
        if name in self.broken:
            raise ConfigError(self.broken[name])
        try:
            return self.recipes[name]
        except KeyError:
            raise ConfigError(f"no recipe {name!r} in {self.layout.packages}; "
                              f"known: {', '.join(sorted(self.recipes))}") from None

    def targets_for_python(self, python: str | None, names: list[str] | None = None) -> list[Target]:
        chosen = self.targets.select(names)
        for t in chosen:
            t.require_buildable()  # before anything is written for it
        return [t for t in chosen if python is None or t.python == python]

    def matrix(self, recipes: list[str] | None = None, targets: list[str] | None = None,
               python: str | None = None) -> list[tuple[Recipe, Target]]:
        """(recipe, target) pairs to build: every selected recipe on every target it supports."""
        chosen = [self.recipe(n) for n in recipes] if recipes else list(self.recipes.values())
        return build_matrix(chosen, self.targets_for_python(python, targets))


@dataclass
class RunSummary:
    builds: list[BuildResult] = field(default_factory=list)
    smokes: list[tuple[Recipe, SmokeResult]] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # recipes that did not load

    @property
    def failures(self) -> list[str]:
        out = [f"recipe {message}" for message in self.broken]
        out += [f"build {b.label}: {(b.record.error or '').splitlines()[0]} (log: {b.record_path.with_suffix('.log')})"
               for b in self.builds if not b.ok]
        out += [f"smoke {s.wheel} on {s.target}" for _r, s in self.smokes if not s.passed]
        return out


@dataclass(frozen=True)
class Selection:
    """Which builds a run makes: (recipe, target) pairs, and the recipes that did not load
    (each one a failure of the run, so a broken recipe is never silently skipped)."""

    pairs: tuple[tuple[Recipe, Target], ...]
    broken: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pairs or self.broken)


def select(project: Project, recipes: list[str] | None = None, targets: list[str] | tuple[str, ...] | None = None,
           python: str | None = None) -> Selection:
    """The named recipes (default: all, and then the broken ones count too) on the selected targets."""
    pairs = project.matrix(recipes or None, list(targets) if targets else None, python)
    return Selection(tuple(pairs), () if recipes else tuple(project.broken.values()))


def run(project: Project, selection: Selection, options: RunOptions, *, say: Say = print,
        command: str = "ot2wheels") -> RunSummary:
    """One build run, whichever front end asked: a ledger run (started, every build and smoke
    test recorded as it completes, finished with its failure count), the builds in `build_all`
    (dependency order, concurrency, cache reuse), smoke tests of what passed, and the summary.

    `options.docker` is the front end's business (it re-runs the command inside the image)."""
    summary = RunSummary(broken=list(selection.broken))
    ledger = Ledger(options.ledger or default_path(project.layout))
    run_id = ledger.start_run(command, options.jobs)
    try:
        pairs = list(selection.pairs)
        if options.build:
            started = time.monotonic()
            summary.builds = build_all(project, pairs, force=options.force, say=say, jobs=options.jobs,
                                       use_ccache=options.ccache, ledger=ledger, run_id=run_id)
            say(reuse_summary(summary.builds, time.monotonic() - started))
            pairs = [(b.recipe, b.target) for b in summary.builds if b.ok]
        if options.smoke:
            summary.smokes = smoke_all(project, pairs, say=say, ledger=ledger, run_id=run_id)
    finally:  # an interrupted run is finished too, with what it got done
        ledger.finish_run(run_id, len(summary.failures))
    return summary


def default_jobs() -> int:
    """Concurrent builds when --jobs is not given: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_jobs_per_build(jobs: int, builds: int, cores: int | None = None) -> int:
    """Split the cores among the builds that run at once: `jobs` builds x this many compilers."""
    cores = cores or default_jobs()
    return max(1, cores // max(1, min(jobs, builds)))


def serialized(say: Say) -> Say:
    """`say` callable from many threads: each line is written whole, never interleaved."""
    lock = threading.Lock()

    def said(line: str) -> None:
        with lock:
            say(line)

    return said


def build_all(project: Project, pairs: list[tuple[Recipe, Target]], *, force: bool = False,
              say: Say = print, jobs: int | None = None, use_ccache: bool = True,
              ledger: Ledger | None = None, run_id: int | None = None,
              timeout_s: float | None = None) -> list[BuildResult]:
    """Build every pair, up to `jobs` at once (default: core count); results in input order.
    `timeout_s` limits each build's compile step (see `build_one`).

    Each build writes its own log file; on the console every step is one line prefixed with
    `[target] project version`. Shared state (toolchains, build envs, sources, dist records)
    is guarded by file locks, so concurrent builds and concurrent runs do not collide.
    Each finished build (passed, failed or reused) is recorded in `ledger` as it completes.
    """
    jobs = max(1, jobs or default_jobs())
    make_jobs = make_jobs_per_build(jobs, len(pairs))
    out = serialized(say)
    stale.sweep(project.layout.cache, time.time(), out)  # what killed runs left behind
    if jobs > 1 and len(pairs) > 1:
        out(f"building {len(pairs)} wheels, {min(jobs, len(pairs))} at a time, "
            f"{make_jobs} compile job(s) each")
    layout = project.layout

    def one(pair: tuple[Recipe, Target]) -> tuple[BuildResult, float]:
        started = time.monotonic()
        result = build_one(pair[0], pair[1], layout, force=force, say=out, make_jobs=make_jobs,
                           use_ccache=use_ccache, timeout_s=timeout_s)
        return result, time.monotonic() - started

    def done(result: BuildResult, seconds: float) -> BuildResult:
        if ledger is not None:  # only this (the calling) thread writes the ledger
            ledger.record_build(result, seconds, run_id)
        return result

    if jobs == 1 or len(pairs) <= 1:
        return [done(*one(p)) for p in pairs]
    results: list[BuildResult | None] = [None] * len(pairs)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="ot2wheels-build") as pool:
        futures = {pool.submit(one, p): i for i, p in enumerate(pairs)}
        for fut in as_completed(futures):
            results[futures[fut]] = done(*fut.result())
    return [r for r in results if r is not None]


def reuse_summary(results: list[BuildResult], elapsed_s: float) -> str:
    """One paragraph: how many builds ran, how many were reused (and which), how long it took."""
    reused = [b for b in results if b.record.result is Outcome.REUSED]
    built = [b for b in results if b.record.result is Outcome.PASSED]
    failed = [b for b in results if not b.ok]
    lines = [f"{len(results)} build(s) in {elapsed_s:.1f}s: {len(built)} built, {len(reused)} reused "
             f"from the cache, {len(failed)} failed"]
    lines += [f"  reused {b.label}: {b.wheel.name if b.wheel else ''}" for b in reused]
    return "\n".join(lines)


def smoke_all(project: Project, pairs: list[tuple[Recipe, Target]], say: Say = print,
              ledger: Ledger | None = None, run_id: int | None = None) -> list[tuple[Recipe, SmokeResult]]:
    """Smoke-test the built wheel of each pair (pairs without a passing build are failures).

    The wheels of one target and sysroot are checked in one qemu-arm run (see `smoke.smoke_many`)."""
    results: dict[int, SmokeResult] = {}
    groups: dict[tuple[str, tuple[str, ...]], list[tuple[int, Recipe, Target, Path, Path]]] = {}
    for i, (recipe, target) in enumerate(pairs):
        record_path = records.record_path(project.layout.dist, target.name, recipe.name, recipe.version, target.cp)
        try:
            rec = records.BuildRecord.from_file(record_path) if record_path.is_file() else None
        except RecordError as exc:
            say(f"[{target.name}] {recipe.name}: {exc}")
            rec = None
        if rec is None or not rec.wheel or rec.result is Outcome.FAILED:
            say(f"[{target.name}] {recipe.name}: no passing wheel to smoke-test (build it first)")
            missing = SmokeResult(f"{recipe.name}-{recipe.version} ({target.cp})", target.name, False, 0.0,
                                  "no wheel")
            if ledger is not None:
                ledger.record_smoke(recipe, target, missing, run_id)
            results[i] = missing
            continue
        groups.setdefault((target.name, recipe.target_libs), []).append(
            (i, recipe, target, record_path, record_path.parent / rec.wheel))
    for group in groups.values():
        target, libs = group[0][2], group[0][1].target_libs
        toolchain = get_toolchain(target, project.layout, libs)
        toolchain.ensure()
        say(f"[{target.name}] smoke test under {target.architecture.qemu}: "
            f"{', '.join(w.name for *_x, w in group)}")
        batch = smoke_many([(recipe, wheel) for _i, recipe, _t, _p, wheel in group], toolchain,
                           cache=project.layout.cache)
        for (i, recipe, _t, record_path, _w), result in zip(group, batch, strict=True):
            say(f"[{target.name}] {recipe.name}: smoke {'PASSED' if result.passed else 'FAILED'} "
                f"({result.duration_s:.1f}s)" + ("" if result.passed else "\n" + result.output[-2500:]))
            _attach_smoke(project.layout, record_path, result)
            if ledger is not None:
                ledger.record_smoke(recipe, target, result, run_id)
            results[i] = result
    return [(recipe, results[i]) for i, (recipe, _t) in enumerate(pairs)]


def _attach_smoke(layout: Layout, record_path: Path, result: SmokeResult) -> None:
    with locks.cache_lock(layout.cache, record_lock_name(record_path)):  # read-modify-write
        rec = records.BuildRecord.from_file(record_path)
        rec.smoke = records.SmokeSummary(result.passed, result.duration_s)
        records.write_atomic(record_path, rec.to_json())


@dataclass(frozen=True)
class SessionSpec:
    """One per-recipe nox session: build-<name>[-X.Y], or a closure's build-<name>."""

    name: str
    doc: str
    recipe: str
    python: str | None = None
    closure: bool = False
    error: str | None = None  # the recipe (or targets.toml) does not load: the session fails so


def recipe_sessions(layout: Layout | None = None) -> list[SessionSpec]:
    """The per-recipe sessions. A broken recipe keeps its session (it fails with the error) and
    the others stay; a broken targets.toml keeps one failing session per recipe folder."""
    layout = layout or Layout.discover()
    try:
        project = Project.load(layout, strict=False)
    except ConfigError as exc:
        return [SessionSpec(f"build-{p.parent.name}", f"cannot load {layout.targets_file}: run it for the error",
                            p.parent.name, error=str(exc))
                for p in sorted(layout.packages.glob("*/recipe.toml"))]
    out = []
    for name, recipe in sorted(project.recipes.items()):
        out.append(SessionSpec(f"build-{name}", f"Build {name} {recipe.version} for every selected target.", name))
        out += [SessionSpec(f"build-{name}-{py}", f"Build {name} {recipe.version} for the CPython {py} target(s).",
                            name, py) for py in sorted({t.python for _r, t in project.matrix([name])})]
    out += [SessionSpec(f"build-{name}", "Plan the closure per target, build its must-build wheels, rehearse "
                        "the install under qemu.", name, closure=True) for name in sorted(project.closures)]
    out += [SessionSpec(f"build-{name}", f"BROKEN recipe: {error.splitlines()[0]}", name, error=error)
            for name, error in sorted(project.broken.items())]
    return out
