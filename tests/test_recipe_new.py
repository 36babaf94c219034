from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fakeindex import FakeIndex
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ot2wheels.errors import ConfigError, SourceError
from ot2wheels.paths import Layout, default_cache_dir
from ot2wheels.plan import plan
from ot2wheels.pypi import IndexClient
from ot2wheels.recipe_new import backend_name, new_recipe, write_missing_recipes
from ot2wheels.recipes import load_recipe
from ot2wheels.targets import load_targets

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """
[build-system]
requires = ["setuptools>=61", "setuptools-rust>=1.5", "oldpy; python_version < '3'",
            "tomli>=1; python_version < '3.11'"]
build-backend = "setuptools.build_meta"
"""
SETUP_PY = """
from setuptools import setup, Extension
setup(ext_modules=[Extension("fastthing._speedups", ["src/speedups.c"]),
                   Extension(name="fastthing.tests._helper", sources=["t.c"])])
"""


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "root" / "toolchain").mkdir(parents=True)
    shutil.copy(ROOT / "toolchain" / "targets.toml", tmp_path / "root" / "toolchain")
    return Layout.discover(tmp_path / "root", cache=tmp_path / "cache")


@pytest.fixture
def index():
    idx = FakeIndex()
    idx.sdist("fastthing", "1.2", files={
        "pyproject.toml": PYPROJECT, "setup.py": SETUP_PY,
        "src/fastthing/__init__.py": "", "tests/__init__.py": "",
        "src/speedups.c": '#include <ffi.h>\n#include "bundled.h"\n#include <Python.h>\n',
        "src/bundled.h": "", "src/yaml.h": "",  # a bundled yaml.h included by nobody
    })
    idx.wheel("fastthing", "1.2", tag="cp311-cp311-manylinux_2_31_armv7l")
    idx.wheel("setuptools", "60.0")
    idx.wheel("setuptools", "70.0")
    idx.wheel("setuptools", "80.0", requires_python=">=3.10")
    idx.wheel("tomli", "2.0")
    idx.wheel("setuptools", "99.0", requires_python=">=3.13")
    idx.wheel("setuptools", "100.0b1")
    idx.wheel("setuptools-rust", "1.9.0")
    idx.wheel("app", "1.0", requires=["fastthing"])
    yield idx.start()
    idx.stop()


def test_new_recipe_from_sdist(index: FakeIndex, layout: Layout) -> None:
    client = IndexClient(layout.cache, index_url=index.url)
    path = new_recipe("fastthing==1.2", layout, client=client, pythons=["3.11"])
    r = load_recipe(path)
    assert path == layout.packages / "fastthing" / "recipe.toml"
    assert (r.name, r.version, r.source.kind, r.source.filename) == ("fastthing", "1.2", "pypi", "fastthing-1.2.tar.gz")
    [sdist] = [f for f in client.files("fastthing") if f.is_sdist]
    assert r.source.sha256 == sdist.sha256
    assert r.requires == ("setuptools==80.0", "setuptools-rust==1.9.0")  # newest final for 3.11; marker: none
    assert r.backend == "setuptools-rust"
    assert r.target_libs == ("libffi-dev", "libstd-rust-web-dev")  # <ffi.h>; Rust std for setuptools-rust
    assert r.smoke.imports == ("fastthing", "fastthing._speedups")
    with pytest.raises(ConfigError, match="already exists"):
        new_recipe("fastthing==1.2", layout, client=client)
    assert new_recipe("fastthing==1.2", layout, client=client, force=True) == path


def test_pins_suit_every_target_python(index: FakeIndex, layout: Layout) -> None:
    client = IndexClient(layout.cache, index_url=index.url)
    r = load_recipe(new_recipe("fastthing==1.2", layout, client=client))  # targets.toml: 3.9, 3.10, 3.11
    assert r.requires == ("setuptools==70.0", "setuptools-rust==1.9.0", 'tomli==2.0; python_version < "3.11"')


def test_new_recipe_needs_exact_version_and_an_sdist(index: FakeIndex, layout: Layout) -> None:
    client = IndexClient(layout.cache, index_url=index.url)
    with pytest.raises(ConfigError, match="one exact version"):
        new_recipe("fastthing>=1", layout, client=client)
    with pytest.raises(SourceError, match="no sdist"):
        new_recipe("setuptools-rust==1.9.0", layout, client=client)


def test_plan_write_recipes_only_for_missing(index: FakeIndex, layout: Layout) -> None:
    client = IndexClient(layout.cache, index_url=index.url)
    p = plan("app==1.0", load_targets(Path(__file__).resolve().parents[1] / "toolchain" / "targets.toml").get("ot2"), client=client)
    assert [e.name for e in p.must_build] == ["fastthing"]
    assert write_missing_recipes(p, layout, client=client) == [layout.packages / "fastthing" / "recipe.toml"]
    assert write_missing_recipes(p, layout, client=client) == []


@pytest.mark.integration
def test_new_recipe_for_real_cffi(layout: Layout) -> None:
    client = IndexClient(default_cache_dir())
    r = load_recipe(new_recipe("cffi==2.0.0", layout, client=client))
    assert r.backend == "setuptools" and "libffi-dev" in r.target_libs
    assert "_cffi_backend" in r.smoke.imports and r.requires[0].startswith("setuptools==")
    # pinned for every target's Python, bullseye's 3.9 included
    name, version = r.requires[0].split("==")
    files = [f for f in client.files(name) if f"-{version}" in f.filename and f.requires_python]
    assert all(Version("3.9.0") in SpecifierSet(f.requires_python) for f in files)


def test_meson_and_cmake_backends_get_their_cross_setup() -> None:
    """`mesonpy` / `scikit_build_core.build` must map to the names crossfiles acts on (pandas
    configured natively for the build machine when its recipe said `other`)."""
    from ot2wheels.crossfiles import CMAKE_BACKENDS, MESON_BACKENDS

    assert backend_name("mesonpy", ["meson-python>=0.13"]) in MESON_BACKENDS
    assert backend_name("scikit_build_core.build", ["scikit-build-core"]) in CMAKE_BACKENDS
    assert backend_name("setuptools.build_meta", ["setuptools", "setuptools-rust"]) == "setuptools-rust"
    assert backend_name("hatchling.build", ["hatchling"]) == "other"
    # an in-tree wrapper (duckdb_packaging.build_backend) of one crossfiles backend is that backend
    wrapper = ["scikit-build-core==1.1.2", "nanobind==3.1.0", "cmake==4.4.5"]
    assert backend_name("duckdb_packaging.build_backend", wrapper, in_tree=True) in CMAKE_BACKENDS
    assert backend_name("duckdb_packaging.build_backend", wrapper) == "other"  # not in-tree: unknown
    assert backend_name("pkg.backend", ["meson-python", "scikit-build-core"], in_tree=True) == "other"  # ambiguous


def test_a_build_requirement_on_numpy_becomes_target_requires(layout: Layout) -> None:
    """pandas/shapely/matplotlib compile against numpy: the recipe takes the TARGET's numpy (not the
    build machine's headers), in the sdist's range; oldest-supported-numpy style `==` pins per
    Python become the lowest floor of the target Pythons; numpy leaves the host pins."""
    idx = FakeIndex()
    idx.sdist("needsnp", "1.0", files={"setup.py": "", "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=61", "numpy==1.21.6; python_version < \'3.11\'",\n'
        '  "numpy==1.23.2; python_version == \'3.11\'", "numpy==2.1.0; python_version >= \'3.13\'"]\n'
        'build-backend = "setuptools.build_meta"\n')})
    idx.sdist("plainnp", "1.0", files={"setup.py": "", "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=61", "numpy>=2.0.0rc1"]\nbuild-backend = "setuptools.build_meta"\n')})
    idx.wheel("setuptools", "80.0")
    for v in ("1.21.6", "1.23.2", "2.1.0", "2.3.5"):
        idx.wheel("numpy", v)
    idx.start()
    try:
        client = IndexClient(layout.cache, index_url=idx.url)
        r = load_recipe(new_recipe("needsnp==1.0", layout, client=client, pythons=["3.10", "3.11"]))
        assert r.target_requires == ("numpy>=1.21.6",) and r.requires == ("setuptools==80.0",)
        r = load_recipe(new_recipe("plainnp==1.0", layout, client=client, pythons=["3.11"]))
        assert r.target_requires == ("numpy>=2.0.0rc1",) and r.requires == ("setuptools==80.0",)
    finally:
        idx.stop()
