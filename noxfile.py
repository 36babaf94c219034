"""Nox sessions: one build session per recipe and Python version, test-arm, tests.

    nox -s demo                      set up the default targets, build every recipe, smoke-test
    nox -s build-msgpack             build msgpack for every default target
    nox -s build-msgpack-3.11        ... only for the targets with CPython 3.11
    nox -s build                     build every recipe
    nox -s test-arm                  smoke-test built wheels under qemu-user (qemu-arm, qemu-aarch64)
    nox -s tests                     the fast unit tests (pytest -m 'not integration')
    nox -s integration               the integration tests (toolchains, qemu, dockerd)

Options after `--` (declared once in ot2wheels.options.RunOptions; `nox -s build -- --help`):
--target NAME (repeatable), --force (rebuild cached builds), --jobs N (concurrent builds;
default: core count), --no-ccache, --ledger PATH, --smoke.
The sessions are thin: the work is done by the ot2wheels library.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # the sessions run in nox's process, from this checkout

from ot2wheels import options, pipeline  # noqa: E402
from ot2wheels.errors import Ot2WheelsError  # noqa: E402
from ot2wheels.options import RunOptions  # noqa: E402

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"


def _options(session: nox.Session) -> tuple[RunOptions, list[str]]:
    """The run options (declared once, in ot2wheels.options) and the recipe names after `--`."""
    parser = options.argparser(f"nox -s {session.name} --")
    parser.add_argument("recipes", nargs="*", help="recipe names (test-arm, build)")
    ns = parser.parse_args(session.posargs)
    return options.from_args(ns), ns.recipes


def _command(session: nox.Session) -> str:
    return f"nox -s {session.name} {' '.join(session.posargs)}".strip()


def _run(session: nox.Session, recipes: list[str] | None, python: str | None, smoke: bool, build: bool) -> None:
    opts, named = _options(session)
    opts = opts.replace(smoke=opts.smoke or smoke, build=build)
    try:
        project = pipeline.Project.load(strict=False)  # a broken recipe fails its own builds only
        selection = pipeline.select(project, recipes or named or None, opts.target, python)
        if not selection:
            session.error(f"nothing to do: no recipe supports the selected targets{f' with Python {python}' if python else ''}")
        summary = pipeline.run(project, selection, opts, say=session.log, command=_command(session))
    except Ot2WheelsError as exc:
        session.error(str(exc))
    for b in summary.builds:
        if b.wheel:
            session.log(f"wheel: {b.wheel.relative_to(ROOT) if b.wheel.is_relative_to(ROOT) else b.wheel}")
    if summary.failures:
        session.error("failed:\n  " + "\n  ".join(summary.failures))


def _closure(session: nox.Session, name: str) -> None:
    """Plan the closure per target, build its must-build wheels, rehearse the install under qemu."""
    from ot2wheels.closure import get_closure, run_closure

    opts, _named = _options(session)
    try:
        proj = pipeline.Project.load(strict=False)
        runs = run_closure(proj, get_closure(proj, name), proj.targets.select(list(opts.target) or None), opts,
                           say=session.log, command=_command(session))
    except Ot2WheelsError as exc:
        session.error(str(exc))
    failures = [f"[{r.target.name}] {f}" for r in runs for f in r.failures]
    for r in runs:
        if r.rehearsal and r.rehearsal.passed:
            session.log(r.rehearsal.output)  # the flow's own output (stdout, then stderr's tail)
    if failures:
        session.error("failed:\n  " + "\n  ".join(failures))


def _recipe_sessions() -> None:
    """build-<name>, build-<name>-<X.Y> per recipe and build-<name> per closure recipe. A broken
    recipe (or targets.toml) keeps its session, which fails with the error; the others stay."""
    for spec in pipeline.recipe_sessions():

        def session_fn(session: nox.Session, _spec: pipeline.SessionSpec = spec) -> None:
            if _spec.error:
                session.error(_spec.error)
            elif _spec.closure:
                _closure(session, _spec.recipe)
            else:
                _run(session, [_spec.recipe], _spec.python, smoke=False, build=True)

        session_fn.__doc__ = spec.doc
        nox.session(name=spec.name, python=False)(session_fn)


_recipe_sessions()


@nox.session(python=False)
def build(session: nox.Session) -> None:
    """Build every recipe for the selected targets."""
    _run(session, None, None, smoke=False, build=True)


@nox.session(name="test-arm", python=False)
def test_arm(session: nox.Session) -> None:
    """Install each built wheel in a fresh target dir and run its smoke test under qemu-arm."""
    _run(session, None, None, smoke=True, build=False)


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The main job: set up the default targets, build every recipe, smoke-test, show the wheels."""
    _run(session, None, None, smoke=True, build=True)
    session.log(f"wheels are in {ROOT / 'dist'}/<target>/<project>/ (with a .json record and .log each)")


def _pytest(session: nox.Session, marker: str) -> None:
    session.install("-e", ".[test]")
    # an explicit -m from the caller wins over the session's own selection
    select = [] if "-m" in session.posargs else ["-m", marker]
    session.run("pytest", *select, *session.posargs)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The fast unit tests (about a minute). Pass pytest options after `--`."""
    _pytest(session, "not integration")


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff and mypy over the project's code (configured in pyproject.toml)."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py", "tasks.py")
    session.run("mypy", "src")


@nox.session(python="3.11")
def integration(session: nox.Session) -> None:
    """Real sysroots, cross builds, qemu, served indexes, dockerd (`-m 'not slow'` skips the slowest)."""
    _pytest(session, "integration")
