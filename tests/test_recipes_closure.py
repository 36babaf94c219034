"""The [closure] extension of the recipe schema (ot2wheels.recipes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ot2wheels.errors import ConfigError
from ot2wheels.recipes import load_all, load_closure, load_closures, load_recipe

ROOT = Path(__file__).resolve().parents[1]

CLOSURE = '''[package]
name = "demo"
version = "1.0"

[closure]
requirement = "demo==1.0"
constraints = "pins.txt"
cutoff = "2025-04-12"
code = "import demo"
targets = ["bookworm-armhf"]
'''
BUILDABLE = '''[package]
name = "other"
version = "2.0"

[source]
sha256 = "''' + "0" * 64 + '''"

[smoke]
imports = ["other"]
'''


def write(root: Path, name: str, text: str) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "recipe.toml").write_text(text)
    return root / name / "recipe.toml"


def test_closure_recipe_loads_and_is_not_a_build(tmp_path: Path) -> None:
    path = write(tmp_path, "demo", CLOSURE)
    (tmp_path / "demo" / "pins.txt").write_text("demo==1.0\n")
    write(tmp_path, "other", BUILDABLE)
    c = load_closure(path, {"bookworm-armhf"})
    assert (c.name, c.requirement, c.cutoff, c.targets) == ("demo", "demo==1.0", "2025-04-12", ("bookworm-armhf",))
    assert c.constraints == (tmp_path / "demo" / "pins.txt").resolve()
    assert list(load_all(tmp_path)) == ["other"]  # builds never see closure recipes
    assert list(load_closures(tmp_path)) == ["demo"]
    with pytest.raises(ConfigError, match="load it with load_closure"):
        load_recipe(path)


@pytest.mark.parametrize("change, message", [
    (("[closure]", "[source]\nsha256 = 'x'\n\n[closure]"), "only \\[package\\] and \\[closure\\]"),
    (('requirement = "demo==1.0"', 'requirement = "other==1.0"'), "does not name demo 1.0"),
    (('constraints = "pins.txt"', 'constraints = "../../etc/passwd"'), "not a file inside"),
    (('code = "import demo"', 'code = "import ("'), "code does not parse"),
    (('targets = ["bookworm-armhf"]', 'targets = ["nope"]'), "unknown target 'nope'"),
    (('cutoff = "2025-04-12"', 'cutof = "2025-04-12"'), "unknown field"),
])
def test_closure_recipe_errors_name_the_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write(tmp_path, "demo", CLOSURE.replace(*change))
    (tmp_path / "demo" / "pins.txt").write_text("demo==1.0\n")
    with pytest.raises(ConfigError, match=message):
        load_closure(path, {"bookworm-armhf"})


def test_the_prefect_closure_recipe() -> None:
    c = load_closure(ROOT / "packages" / "prefect")
    assert c.requirement == "prefect==3.3.4" and c.cutoff == "2025-04-12"
    assert "@flow" in c.code and "@task" in c.code
    pins = (c.directory / "constraints.txt").read_text().splitlines()  # the reference closure, for `invoke plan`
    assert len([ln for ln in pins if "==" in ln]) == 93
