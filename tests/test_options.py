"""The run options are declared once (ot2wheels.options.RunOptions): nox's parser, invoke's
help and `pipeline.run` all come from that declaration."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from ot2wheels import options, pipeline
from ot2wheels.ledger import Ledger
from ot2wheels.options import RunOptions, flag
from ot2wheels.paths import Layout

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WithNewOption(RunOptions):
    """RunOptions plus one option, as a developer would add it."""

    keep_going: int | None = field(default=None, metadata=flag("how many failures to tolerate"))


def _tasks_module():
    spec = importlib.util.spec_from_file_location("ot2wheels_tasks_under_test", REPO / "tasks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_new_option_appears_in_the_nox_parser_and_the_invoke_help() -> None:
    parser = options.argparser("nox -s build --", WithNewOption)
    parsed = options.from_args(parser.parse_args(["--keep-going", "3", "--target", "a"]), WithNewOption)
    assert parsed.keep_going == 3 and parsed.target == ("a",)
    assert "how many failures to tolerate" in parser.format_help()
    assert options.invoke_help(WithNewOption)["keep_going"] == "how many failures to tolerate"
    assert "keep_going" not in options.invoke_help(RunOptions)


def test_readme_nox_options_parse_to_the_run_options() -> None:
    parser = options.argparser("nox -s build --")
    parser.add_argument("recipes", nargs="*")
    ns = parser.parse_args(["--target", "bookworm-armhf", "--target", "ot2", "--force", "--jobs", "2",
                            "--no-ccache", "--ledger", "l.sqlite", "pyyaml"])
    opts = options.from_args(ns)
    assert opts == RunOptions(target=("bookworm-armhf", "ot2"), force=True, jobs=2, ccache=False,
                              ledger=Path("l.sqlite"))
    assert ns.recipes == ["pyyaml"]
    assert options.from_args(parser.parse_args(["-j", "3"])).jobs == 3
    with pytest.raises(SystemExit):  # --docker is invoke's (it re-runs the command in the image)
        parser.parse_args(["--docker"])


def test_invoke_build_task_takes_its_help_and_flags_from_the_declaration() -> None:
    build = _tasks_module().build
    args = {a.name: a for a in build.get_arguments()}
    for f, fl in options.cli_fields(RunOptions, options.INVOKE):
        assert f.name in args, f"invoke build lacks --{f.name}"
        assert args[f.name].help == fl.help
    assert args["target"].kind is list and args["recipe"].kind is list
    # what invoke hands the task converts to the same options nox would make
    got = options.from_args({"target": ["ot2"], "jobs": "2", "ccache": False, "smoke": True, "docker": True,
                             "ledger": "x.sqlite", "recipe": ["regex"], "c": object()})
    assert got == RunOptions(target=("ot2",), jobs=2, ccache=False, smoke=True, docker=True, ledger=Path("x.sqlite"))


def test_to_argv_reproduces_the_options() -> None:
    opts = RunOptions(target=("a", "b"), force=True, jobs=2, ccache=False, smoke=True)
    argv = options.to_argv(opts, options.NOX)
    assert options.from_args(options.argparser("x").parse_args(argv)) == opts
    assert options.to_argv(RunOptions()) == []
    assert "--docker" in options.to_argv(dataclasses.replace(opts, docker=True), options.INVOKE)


def test_run_records_a_finished_ledger_run(project_root: Path, tmp_path: Path) -> None:
    """Even a run with nothing to build is a ledger run, finished with its failure count."""
    project = pipeline.Project.load(Layout(root=project_root, cache=tmp_path / "cache", dist=tmp_path / "dist"))
    selection = pipeline.Selection((), broken=("recipe packages/x/recipe.toml: bad",))
    said: list[str] = []
    summary = pipeline.run(project, selection, RunOptions(jobs=1), say=said.append, command="nox -s build")
    assert summary.failures == ["recipe recipe packages/x/recipe.toml: bad"]
    [run] = Ledger(tmp_path / "dist" / "ledger.sqlite").runs()
    assert run["command"] == "nox -s build" and run["jobs"] == 1
    assert run["failures"] == 1 and run["finished_at"] >= run["started_at"]
    assert said and "0 build(s)" in said[0]


def test_noxfile_parses_with_the_declared_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import nox  # noqa: F401  (the noxfile registers sessions on import)

    monkeypatch.syspath_prepend(str(REPO))
    spec = importlib.util.spec_from_file_location("ot2wheels_noxfile_under_test", REPO / "noxfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)

        # what _options reads of a nox session
        session = SimpleNamespace(name="build-msgpack", posargs=["--target", "ot2", "--no-ccache", "msgpack"])
        opts, named = module._options(session)
        assert opts == RunOptions(target=("ot2",), ccache=False) and named == ["msgpack"]
    finally:
        sys.modules.pop(spec.name, None)
