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
        assert result.record.gate["repaired"]
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
