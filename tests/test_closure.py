from __future__ import annotations

from pathlib import Path

import pytest
from fakeindex import FakeIndex

from ot2wheels.closure import get_closure, plan_closure, run_closure
from ot2wheels.errors import ConfigError
from ot2wheels.paths import Layout, default_cache_dir
from ot2wheels.pipeline import Project
from ot2wheels.pypi import IndexClient
from ot2wheels.recipes import ClosureRecipe
from ot2wheels.targets import Target

ROOT = Path(__file__).resolve().parents[1]
PY310 = Target(name="ot2", python="3.10", platform="linux_armv7l", glibc=(2, 25),
               triplet="arm-buildroot-linux-gnueabihf", provider="buildroot-sdk")


def test_plan_closure_falls_back_to_the_cutoff_when_constraints_do_not_fit(tmp_path: Path) -> None:
    idx = FakeIndex()
    idx.wheel("app", "1.0", requires=["lib"], upload_time="2024-01-01T00:00:00Z")
    idx.wheel("lib", "1.0", upload_time="2024-01-01T00:00:00Z")
    idx.wheel("lib", "2.0", upload_time="2024-06-01T00:00:00Z", requires_python=">=3.12")
    idx.wheel("lib", "3.0", upload_time="2025-06-01T00:00:00Z")
    idx.start()
    try:
        pins = tmp_path / "pins.txt"
        pins.write_text("app==1.0\nlib==2.0\n")
        closure = ClosureRecipe(name="app", version="1.0", requirement="app==1.0", directory=tmp_path,
                                constraints=pins, cutoff="2025-01-01")
        said: list[str] = []
        p = plan_closure(closure, PY310, IndexClient(tmp_path / "cache", index_url=idx.url), say=said.append)
        assert p.get("lib").version == "1.0"  # 2.0 needs 3.12, 3.0 is after the cut-off
        assert said and "constraints do not fit" in said[0]
        no_cutoff = ClosureRecipe(name="app", version="1.0", requirement="app==1.0", directory=tmp_path,
                                  constraints=pins)
        with pytest.raises(Exception, match="constraints do not fit"):
            plan_closure(no_cutoff, PY310, IndexClient(tmp_path / "cache", index_url=idx.url), say=said.append)
    finally:
        idx.stop()


def test_get_closure_names_the_known_ones() -> None:
    project = Project.load(Layout.discover(ROOT))
    assert get_closure(project, "prefect").requirement == "prefect==3.3.4"
    with pytest.raises(ConfigError, match="known: prefect"):
        get_closure(project, "cffi")  # a buildable recipe, not a closure


@pytest.mark.integration
@pytest.mark.slow
def test_build_prefect_on_bookworm_installs_and_runs_a_flow_under_qemu() -> None:
    """`nox -s build-prefect -- --target bookworm-armhf` as a test: ~8-10 min with cached builds."""
    project = Project.load(Layout.discover(ROOT, cache=default_cache_dir()))
    target = project.targets.get("bookworm-armhf")
    [run] = run_closure(project, get_closure(project, "prefect"), [target], say=print)
    assert run.ok, "\n".join(run.failures)
    assert run.rehearsal is not None and "flow result: 42" in run.rehearsal.output
    assert run.rehearsal.installed["prefect"] == "3.3.4"
    assert {"cffi", "greenlet", "asyncpg"} <= {f.split("-")[0] for f in run.rehearsal.from_wheelhouse}


@pytest.mark.integration
def test_closure_run_is_a_ledger_run(layout: Layout, tmp_path: Path) -> None:
    """The closure path goes through `pipeline.run`: its build and smoke test are rows of one
    ledger run, finished with the failure count (here a smoke test that fails, so no rehearsal)."""
    from conftest import make_tiny_sdist, sha, write_tiny_recipe

    from ot2wheels.ledger import Ledger
    from ot2wheels.options import RunOptions

    sdist = make_tiny_sdist(tmp_path)
    idx = FakeIndex()
    idx.wheel("app", "1.0", requires=["tiny==1.0"])
    idx.add("tiny", sdist.name, sdist.read_bytes())  # an sdist only: tiny must be built
    idx.start()
    try:
        recipe = write_tiny_recipe(layout.packages, f"{idx.url.removesuffix('/simple')}/files/{sdist.name}", sha(sdist))
        recipe.write_text(recipe.read_text().replace("== 42", "== 43"))  # the smoke test fails
        (layout.packages / "app").mkdir()
        (layout.packages / "app" / "recipe.toml").write_text(
            '[package]\nname = "app"\nversion = "1.0"\n\n[closure]\nrequirement = "app==1.0"\n')
        project = Project.load(layout)
        target = project.targets.get("bookworm-armhf")
        [run] = run_closure(project, get_closure(project, "app"), [target], RunOptions(jobs=1),
                            say=lambda s: None, command="nox -s build-app", client=IndexClient(tmp_path / "c", index_url=idx.url))
    finally:
        idx.stop()
    assert run.plan is not None and [e.name for e in run.plan.must_build] == ["tiny"]
    assert run.rehearsal is None and any(f.startswith("smoke tiny") for f in run.failures)
    ledger = Ledger(layout.dist / "ledger.sqlite")
    [lrun] = ledger.runs()
    assert lrun["command"] == "nox -s build-app [bookworm-armhf]" and lrun["failures"] == 1
    assert lrun["finished_at"] is not None
    assert [(b["package"], b["status"], b["run_id"]) for b in ledger.builds()] == [("tiny", "passed", lrun["id"])]
    assert [(s["package"], s["status"], s["run_id"]) for s in ledger.smokes()] == [("tiny", "failed", lrun["id"])]
