from pathlib import Path

import pytest

from ot2wheels.errors import ConfigError
from ot2wheels.recipes import load_all, load_recipe
from ot2wheels.targets import load_targets

REPO = Path(__file__).resolve().parents[1]
SHA = "a" * 64

GOOD = f"""
[package]
name = "demo"
version = "1.2.3"

[source]
sha256 = "{SHA}"

[build]
requires = ["setuptools==80.9.0"]
env = {{ FOO = "1" }}

[smoke]
imports = ["demo"]
code = "import demo"
"""


def write(tmp_path: Path, text: str, folder: str = "demo") -> Path:
    d = tmp_path / folder
    d.mkdir(exist_ok=True)
    (d / "recipe.toml").write_text(text)
    return d / "recipe.toml"


def test_every_shipped_recipe_loads_and_has_a_native_smoke_import() -> None:
    targets = set(load_targets(REPO / "toolchain" / "targets.toml").targets)
    recipes = load_all(REPO / "packages", targets)
    native = {n: r for n, r in recipes.items() if r.source.kind == "pypi"}
    assert len(native) >= 6
    for r in native.values():
        assert len(r.source.sha256) == 64 and r.smoke.imports


def test_good_recipe_and_digest_changes_with_content(tmp_path: Path) -> None:
    a = load_recipe(write(tmp_path, GOOD))
    assert (a.name, a.version, a.source.kind, a.env) == ("demo", "1.2.3", "pypi", (("FOO", "1"),))
    b = load_recipe(write(tmp_path, GOOD.replace('FOO = "1"', 'FOO = "2"')))
    assert a.digest != b.digest
    assert a.build_digest != b.build_digest


def test_build_digest_ignores_the_smoke_test_and_summary(tmp_path: Path) -> None:
    a = load_recipe(write(tmp_path, GOOD))
    refined = load_recipe(write(tmp_path, GOOD.replace('imports = ["demo"]', 'imports = ["demo", "demo._ext"]')
                                .replace('version = "1.2.3"', 'version = "1.2.3"\nsummary = "C ext"')))
    assert refined.digest != a.digest  # the record still tells them apart
    assert refined.build_digest == a.build_digest  # but the wheel is the same build
    patched = load_recipe(write(tmp_path, GOOD.replace('requires = ["setuptools==80.9.0"]',
                                                       'requires = ["setuptools==80.9.1"]')))
    assert patched.build_digest != a.build_digest


@pytest.mark.parametrize(
    "change, field",
    [
        (("[smoke]", "[smoke]\ncolour = 'red'"), "unknown field(s) ['colour']"),
        (('version = "1.2.3"', 'version = "one"'), "[package] version 'one' is not a PEP 440 version"),
        ((f'sha256 = "{SHA}"', ""), "[source] missing field 'sha256'"),
        ((f'sha256 = "{SHA}"', 'sha256 = "abc"'), "[source] sha256 'abc' is not 64 hex digits"),
        (('"setuptools==80.9.0"', '"setuptools>=70"'), "must be pinned with =="),
        (('code = "import demo"', 'code = "import ("'), "[smoke] code does not parse"),
        (('name = "demo"', 'name = "other"'), "does not match its folder"),
        (("[build]", "[build]\npatches = ['../../etc/passwd']"), "[build] patches"),
        (("[build]", "[build]\ntargets = ['mars-armhf']"), "unknown target 'mars-armhf'"),
        (("[smoke]\nimports = [\"demo\"]", "[smoke]\nimports = []"), "[smoke] imports"),
    ],
)
def test_bad_recipes_name_file_and_field(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as err:
        load_recipe(path, known_targets={"bookworm-armhf"})
    assert str(path) in str(err.value)
    assert field in str(err.value)


def test_not_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(write(tmp_path, "[package\nname="))


def test_supports_filters_by_target_and_python(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, GOOD.replace("[build]", "[build]\npython = '>=3.10'\ntargets = ['bookworm-armhf']")))
    assert r.supports("bookworm-armhf", "3.11")
    assert not r.supports("bookworm-armhf", "3.9")
    assert not r.supports("bullseye-armhf", "3.11")
