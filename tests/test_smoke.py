"""Real cross builds of the repository's recipes and real qemu-arm runs of their smoke tests."""

import zipfile

import pytest

from ot2wheels.build import build_one
from ot2wheels.pipeline import smoke_all
from ot2wheels.smoke import smoke_test
from ot2wheels.toolchains import get_toolchain

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("target", ["bookworm-armhf", "bullseye-armhf"])
@pytest.mark.parametrize("name", ["markupsafe", "pyyaml"])
def test_recipe_builds_and_passes_its_smoke_test(repo_project, name: str, target: str) -> None:
    recipe, t = repo_project.recipe(name), repo_project.targets.get(target)
    result = build_one(recipe, t, repo_project.layout, say=lambda s: None)
    assert result.ok, result.record.error
    assert f"-{t.cp}-{t.cp}-" in result.wheel.name and "armv7l" in result.wheel.name
    if name == "pyyaml":  # libyaml is not on a stock target: it must be vendored into the wheel
        assert result.record.gate.repaired
        assert any("libyaml" in n for n in zipfile.ZipFile(result.wheel).namelist())
    [(_, smoke)] = smoke_all(repo_project, [(recipe, t)], say=lambda s: None)
    assert smoke.passed, smoke.output
    assert "native modules:" in smoke.output and ".so" in smoke.output


def test_smoke_test_fails_when_the_snippet_fails(repo_project) -> None:
    import dataclasses

    recipe = repo_project.recipe("markupsafe")
    target = repo_project.targets.get("bookworm-armhf")
    built = build_one(recipe, target, repo_project.layout, say=lambda s: None)
    wrong = dataclasses.replace(recipe, smoke=dataclasses.replace(recipe.smoke, code="assert 1 + 1 == 3, 'arith'"))
    result = smoke_test(wrong, built.wheel, get_toolchain(target, repo_project.layout))
    assert not result.passed and "AssertionError: arith" in result.output


def test_one_qemu_run_checks_many_wheels_each_isolated_and_attributed(repo_project) -> None:
    """Four checks of one target in one qemu run: a pass, a failed snippet, a crash and a hang;
    each is reported on its own wheel, and nothing one check did is seen by the next."""
    import dataclasses

    from ot2wheels.smoke import smoke_many

    target = repo_project.targets.get("bookworm-armhf")
    built = {n: build_one(repo_project.recipe(n), target, repo_project.layout, say=lambda s: None)
             for n in ("markupsafe", "msgpack", "cffi")}
    assert all(b.ok for b in built.values())

    def with_code(name: str, code: str):
        r = repo_project.recipe(name)
        return dataclasses.replace(r, smoke=dataclasses.replace(r.smoke, code=code))

    leak = "import sys, pathlib; sys.modules['leaked'] = sys; pathlib.Path('left-behind').write_text('x')"
    clean = ("import sys, pathlib, importlib.util; assert 'leaked' not in sys.modules; "
             "assert not pathlib.Path('left-behind').exists(); "
             "assert importlib.util.find_spec('pycparser') is None, 'cffi dependency leaked'; "
             "assert importlib.util.find_spec('cffi') is None, 'another wheel leaked'")
    items = [(with_code("cffi", leak + "\nimport pycparser"), built["cffi"].wheel),
             (with_code("markupsafe", "assert 1 + 1 == 3, 'arith'"), built["markupsafe"].wheel),
             (with_code("msgpack", "import os; os.kill(os.getpid(), 11)"), built["msgpack"].wheel),
             (with_code("markupsafe", "import time; time.sleep(60)"), built["markupsafe"].wheel),
             (with_code("msgpack", clean), built["msgpack"].wheel)]
    tc = get_toolchain(target, repo_project.layout)
    results = smoke_many(items, tc, cache=repo_project.layout.cache, timeout=5)
    assert [r.wheel for r in results] == [w.name for _r, w in items]
    assert [r.passed for r in results] == [True, False, False, False, True], [r.output for r in results]
    assert "+ pycparser-" in results[0].output and "pycparser" not in results[4].output
    assert "AssertionError: arith" in results[1].output and "arith" not in results[2].output
    assert "exit status -11" in results[2].output
    assert "timed out after 5s" in results[3].output


def test_a_check_that_kills_the_shared_run_fails_alone(repo_project) -> None:
    """If one check takes the whole qemu run down, the wheels it did not report are checked again
    one by one: only the culprit fails."""
    import dataclasses

    from ot2wheels.smoke import smoke_many

    target = repo_project.targets.get("bookworm-armhf")
    recipe = repo_project.recipe("msgpack")
    wheel = build_one(recipe, target, repo_project.layout, say=lambda s: None).wheel
    killer = dataclasses.replace(recipe, smoke=dataclasses.replace(
        recipe.smoke, code="import os, signal, time; os.kill(os.getppid(), signal.SIGKILL); time.sleep(30)"))
    items = [(recipe, wheel), (killer, wheel), (recipe, wheel)]
    results = smoke_many(items, get_toolchain(target, repo_project.layout), cache=repo_project.layout.cache,
                         timeout=20, parallel=1)
    assert [r.passed for r in results] == [True, False, True], [r.output for r in results]
    assert "the qemu-arm run ended during this check" in results[1].output


def test_a_missing_dependency_fails_only_the_wheel_that_needs_it(repo_project) -> None:
    """The shared dependency download fails (one recipe asks for a release that does not exist):
    each wheel's own requirements are resolved alone, so only that wheel fails."""
    import dataclasses

    from ot2wheels.smoke import smoke_many

    target = repo_project.targets.get("bookworm-armhf")
    cffi, msgpack = repo_project.recipe("cffi"), repo_project.recipe("msgpack")
    wheels = {r.name: build_one(r, target, repo_project.layout, say=lambda s: None).wheel for r in (cffi, msgpack)}
    impossible = dataclasses.replace(msgpack, smoke=dataclasses.replace(msgpack.smoke, requires=("pycparser==0.0.0",)))
    results = smoke_many([(cffi, wheels["cffi"]), (impossible, wheels["msgpack"])],
                         get_toolchain(target, repo_project.layout), cache=repo_project.layout.cache)
    assert [r.passed for r in results] == [True, False], [r.output for r in results]
    assert "pycparser==0.0.0" in results[1].output and "cannot get the runtime dependencies" in results[1].output
