"""recipe.new fixes for the failure classes of issue 14, each on a small synthetic sdist:
smoke imports from the built wheel, dynamic build requirements, Contents header map, host paths
kept out of the cross build, official cross switches as data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakeindex import FakeIndex, make_sdist

from ot2wheels import hostguard, hosttools
from ot2wheels.build import BuildResult, build_one
from ot2wheels.debcontents import header_map, parse_contents
from ot2wheels.errors import ConfigError, ToolchainError
from ot2wheels.paths import Layout
from ot2wheels.pipeline import Project
from ot2wheels.pypi import IndexClient
from ot2wheels.recipe_new import load_cross_switches, new_recipe, refine_smoke_imports, target_libs, wheel_smoke
from ot2wheels.recipes import load_recipe
from ot2wheels.smoke import smoke_test
from ot2wheels.targets import Target, load_targets
from ot2wheels.toolchains import get_toolchain

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = "80.9.0"  # a real release: build environments install it from the real index

MODULE_C = """#include <Python.h>
{includes}
static struct PyModuleDef m = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, NULL}};
PyMODINIT_FUNC PyInit_{name}(void) {{ {body} return PyModule_Create(&m); }}
"""


def module_c(name: str, includes: str = "", body: str = "") -> str:
    return MODULE_C.format(name=name, includes=includes, body=body)


def serve_as_url(recipe: Path, index: FakeIndex) -> None:
    """The generated recipe points at the (real) configured index; point it at the stand-in's file."""
    r = load_recipe(recipe)
    text = recipe.read_text().replace(
        'kind = "pypi"\nfilename = ',
        f'kind = "url"\nurl = "{index.url.rsplit("/simple", 1)[0]}/files/{r.source.filename}"\n# filename = ')
    recipe.write_text(text)


def _build_generated(fake: FakeIndex, layout: Layout, name: str) -> tuple[Path, Target, BuildResult]:
    """recipe.new for `name==1.0` from the stand-in index (CPython 3.11), built for bookworm-armhf."""
    fake.start()
    path = new_recipe(f"{name}==1.0", layout, client=IndexClient(layout.cache, index_url=fake.url),
                      pythons=["3.11"])
    serve_as_url(path, fake)
    project = Project.load(layout)
    target = project.targets.get("bookworm-armhf")
    result = build_one(project.recipe(name), target, layout, say=lambda s: None)
    assert result.ok and result.wheel is not None, result.record.error
    return path, target, result


@pytest.fixture
def fake():
    idx = FakeIndex()
    idx.wheel("setuptools", SETUPTOOLS)
    idx.wheel("cython", "3.1.2")
    idx.wheel("wheel", "0.45.1")
    yield idx
    idx.stop()


# --- 1. smoke imports from the built wheel ---------------------------------------------------
def _zip_wheel(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for n in names:
            zf.writestr(n, "")
    return path


def test_wheel_smoke_is_what_the_wheel_ships(tmp_path: Path) -> None:
    whl = _zip_wheel(tmp_path / "optmod-1.0-cp311-cp311-linux_armv7l.whl", [
        "optmod/__init__.py", "optmod/_fast.cpython-311-arm-linux-gnueabihf.so",
        "optmod/tests/__init__.py", "optmod/tests/_helper.cpython-311-arm-linux-gnueabihf.so",
        "_topext.abi3.so", "single.py", "optmod.libs/libfoo-1a2b.so.1",
        "optmod-1.0.data/platlib/plat/__init__.py", "optmod-1.0.data/scripts/tool",
        "optmod-1.0.dist-info/METADATA"])
    found = wheel_smoke(whl)
    assert found.imports == ("optmod",)  # the root with compiled code; plat and single are pure
    assert found.load == ("_topext.abi3.so", "optmod.libs/libfoo-1a2b.so.1",
                          "optmod/_fast.cpython-311-arm-linux-gnueabihf.so")


def test_wheel_smoke_leaves_out_pure_roots_beside_compiled_ones(tmp_path: Path) -> None:
    """black's wheel: mypyc-compiled black/ and blib2to3/, a pure blackd/ that needs the optional
    aiohttp, a top-level mypyc helper module; a wheel without packages of compiled code keeps all."""
    whl = _zip_wheel(tmp_path / "black-1.0-cp311-cp311-linux_armv7l.whl", [
        "black/__init__.py", "black/linegen.cpython-311-arm-linux-gnueabihf.so",
        "blib2to3/__init__.py", "blib2to3/pytree.cpython-311-arm-linux-gnueabihf.so",
        "blackd/__init__.py", "_black_version.py", "30fc__mypyc.cpython-311-arm-linux-gnueabihf.so"])
    found = wheel_smoke(whl)
    assert found.imports == ("black", "blib2to3")
    assert "30fc__mypyc.cpython-311-arm-linux-gnueabihf.so" in found.load
    flat = _zip_wheel(tmp_path / "cffi-1.0-cp311-cp311-linux_armv7l.whl", [
        "cffi/__init__.py", "cffi/api.py", "_cffi_backend.cpython-311-arm-linux-gnueabihf.so"])
    assert wheel_smoke(flat).imports == ("cffi",)


def test_wheel_smoke_imports_only_packages_with_init(tmp_path: Path) -> None:
    """debugpy's vendored tree (a folder without __init__.py below a package) is not imported,
    its extension only opened; a namespace portion at the top leads to its first regular package."""
    whl = _zip_wheel(tmp_path / "dbg-1.0-cp311-cp311-linux_armv7l.whl", [
        "dbg/__init__.py", "dbg/_vendored/__init__.py", "dbg/_vendored/pydevd/pydevd.py",
        "dbg/_vendored/pydevd/_bundle/__init__.py", "dbg/_vendored/pydevd/_bundle/cy.cpython-311-arm.so",
        "ns/sub/__init__.py", "ns/sub/_c.abi3.so", "loose/mod.py"])
    found = wheel_smoke(whl)
    assert found.imports == ("dbg", "ns.sub")
    assert found.load == ("dbg/_vendored/pydevd/_bundle/cy.cpython-311-arm.so", "ns/sub/_c.abi3.so")


def _recipe(tmp_path: Path, smoke: str) -> Path:
    (tmp_path / "optmod").mkdir()
    recipe = tmp_path / "optmod" / "recipe.toml"
    recipe.write_text('[package]\nname = "optmod"\nversion = "1.0"\n\n[source]\nkind = "url"\n'
                      f'url = "https://example.invalid/o.tar.gz"\nsha256 = "{"0" * 64}"\n\n'
                      '[build]\nrequires = ["setuptools==80.9.0"]\n\n[smoke]\n' + smoke)
    return recipe


def test_refine_replaces_only_the_smoke_imports(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, 'imports = ["optmod", "optmod._accel"]\ncode = "import optmod"\n')
    whl = _zip_wheel(tmp_path / "optmod-1.0-cp311-cp311-linux_armv7l.whl",
                     ["optmod/__init__.py", "optmod/_fast.cpython-311-arm-linux-gnueabihf.so"])
    assert refine_smoke_imports(recipe, whl).imports == ("optmod",)
    r = load_recipe(recipe)
    assert r.smoke.imports == ("optmod",) and r.smoke.code == "import optmod"
    assert r.smoke.load == ("optmod/_fast.cpython-311-arm-linux-gnueabihf.so",)
    assert r.requires == ("setuptools==80.9.0",)
    # refining again replaces the lists instead of adding lines
    refine_smoke_imports(recipe, whl)
    assert recipe.read_text().count("load = ") == 1 and recipe.read_text().count("# from the built wheel") == 1
    empty = _zip_wheel(tmp_path / "empty-1.0-py3-none-any.whl", ["empty-1.0.dist-info/METADATA"])
    with pytest.raises(ConfigError, match="ships no importable module"):
        refine_smoke_imports(recipe, empty)


def test_smoke_load_must_be_relative_shared_objects(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, 'imports = []\nload = ["../evil.so"]\n')
    with pytest.raises(ConfigError, match=r"load: '\.\./evil\.so' must be a relative path"):
        load_recipe(recipe)
    recipe.write_text(recipe.read_text().replace('load = ["../evil.so"]', "load = []"))
    with pytest.raises(ConfigError, match=r"imports .* or load .* must name at least one"):
        load_recipe(recipe)


OPTMOD_SETUP = """
from setuptools import Extension, setup
setup(name="optmod", version="1.0", packages=["optmod", "optmod.tests"],
      ext_modules=[Extension("optmod._fast", ["optmod/_fast.cpp"], language="c++"),  # C++: LDCXXSHARED
                   Extension("optmod.tests._helper", ["optmod/tests/_helper.c"]),
                   Extension("optmod._accel", ["optmod/_accel.c"], optional=True)])
"""


@pytest.mark.integration
def test_generated_smoke_test_follows_the_built_wheel(fake: FakeIndex, layout: Layout) -> None:
    """A guessed import of an optional extension that did not build fails the smoke test; the
    imports refined from the built wheel pass it and leave the test-only extension out."""
    fake.sdist("optmod", "1.0", files={
        "setup.py": OPTMOD_SETUP, "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n',
        "optmod/__init__.py": "", "optmod/tests/__init__.py": "",
        "optmod/_fast.cpp": module_c("_fast"), "optmod/tests/_helper.c": module_c("_helper"),
        "optmod/_accel.c": module_c("_accel", "#include <no_such_library.h>"),  # optional: skipped
    })
    fake.start()
    path = new_recipe("optmod==1.0", layout, client=IndexClient(layout.cache, index_url=fake.url),
                      pythons=["3.11"])
    assert load_recipe(path).smoke.imports == ("optmod", "optmod._accel", "optmod._fast")  # the guess
    serve_as_url(path, fake)
    project = Project.load(layout)
    target = project.targets.get("bookworm-armhf")
    result = build_one(project.recipe("optmod"), target, layout, say=lambda s: None)
    assert result.ok and result.wheel is not None, result.record.error
    toolchain = get_toolchain(target, layout)
    guessed = smoke_test(project.recipe("optmod"), result.wheel, toolchain)
    assert not guessed.passed and "_accel" in guessed.output
    assert refine_smoke_imports(path, result.wheel).imports == ("optmod",)
    assert smoke_test(load_recipe(path), result.wheel, toolchain).passed


SHAPES_SETUP = """
from setuptools import Extension, setup
setup(name="shapes", version="1.0", packages=["shapes"],
      ext_modules=[Extension("shapes._plain", ["shapes/_plain.c"]),  # a ctypes library: no PyInit_
                   Extension("shapes._optional", ["shapes/_optional.c"]),  # imports a module nobody ships
                   Extension("shapes._broken", ["shapes/_broken.c"]),  # imports its own missing module
                   Extension("shapes._vendored._bundle._v", ["shapes/_v.c"])])  # no __init__.py above it
"""
NEEDS = 'PyObject *d = PyImport_ImportModule("{0}"); if (d == NULL) return NULL; Py_DECREF(d);'


@pytest.mark.integration
@pytest.mark.slow
def test_smoke_opens_shared_objects_and_imports_what_can_be_imported(fake: FakeIndex, layout: Layout) -> None:
    """One test per smoke-imports class: a ctypes library (no PyInit_) is opened, not imported; an
    extension under a folder without __init__.py is opened only; an extension needing a module
    absent from the environment passes on its native check; one needing a module its own wheel
    should ship fails."""
    fake.sdist("shapes", "1.0", files={
        "setup.py": SHAPES_SETUP, "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n',
        "shapes/__init__.py": "", "shapes/_plain.c": "int shapes_plain(void) { return 42; }\n",
        "shapes/_optional.c": module_c("_optional", body=NEEDS.format("_absent_cffi_backend")),
        "shapes/_broken.c": module_c("_broken", body=NEEDS.format("shapes._not_shipped")),
        "shapes/_v.c": module_c("_v", body=NEEDS.format("_bundle_on_its_own_path")),
    })
    path, target, result = _build_generated(fake, layout, "shapes")
    found = refine_smoke_imports(path, result.wheel)
    assert found.imports == ("shapes",)
    assert [p.split(".")[0] for p in found.load] == [
        "shapes/_broken", "shapes/_optional", "shapes/_plain", "shapes/_vendored/_bundle/_v"]
    toolchain = get_toolchain(target, layout)
    smoke = smoke_test(load_recipe(path), result.wheel, toolchain)
    assert not smoke.passed and "No module named 'shapes._not_shipped'" in smoke.output
    text = path.read_text()
    broken = next(p for p in found.load if p.startswith("shapes/_broken"))
    path.write_text(text.replace(f'"{broken}", ', ""))
    smoke = smoke_test(load_recipe(path), result.wheel, toolchain)
    assert smoke.passed, smoke.output
    assert "not imported: shapes/_optional" in smoke.output and "_absent_cffi_backend" in smoke.output
    assert "shapes/_plain" in smoke.output and "_bundle_on_its_own_path" not in smoke.output


INITPKG_SETUP = """
from setuptools import Extension, setup
setup(name="initpkg", version="1.0", packages=["initpkg"],
      ext_modules=[Extension("initpkg.__init__", ["initpkg/__init__.c"])])
"""
# As mypyc's package inits: PyInit_<package> for the package, PyInit___init__ as well; the second
# refuses here, so importing the file as `initpkg.__init__` fails the smoke test.
INITPKG_C = """#include <Python.h>
static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "initpkg", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_initpkg(void) { return PyModule_Create(&m); }
PyMODINIT_FUNC PyInit___init__(void) {
    PyErr_SetString(PyExc_ImportError, "initpkg imported as initpkg.__init__"); return NULL; }
"""


@pytest.mark.integration
def test_smoke_imports_a_compiled_package_init_as_the_package(fake: FakeIndex, layout: Layout) -> None:
    """A wheel whose package __init__ is an extension module (mypy's, built with mypyc): the load
    list's `pkg/__init__....so` is the package itself, not a module named `pkg.__init__`."""
    fake.sdist("initpkg", "1.0", files={
        "setup.py": INITPKG_SETUP, "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n',
        "initpkg/__init__.py": "", "initpkg/__init__.c": INITPKG_C,
    })
    path, target, result = _build_generated(fake, layout, "initpkg")
    found = refine_smoke_imports(path, result.wheel)
    assert [p.split(".")[0] for p in found.load] == ["initpkg/__init__"]
    smoke = smoke_test(load_recipe(path), result.wheel, get_toolchain(target, layout))
    assert smoke.passed, smoke.output
    assert "native modules:\n  initpkg/__init__." in smoke.output  # the package itself is native


# --- 2. dynamic build requirements through the backend's hook --------------------------------
BACKEND = """
from setuptools.build_meta import *  # noqa: F401,F403
from setuptools import build_meta as _orig


def get_requires_for_build_wheel(config_settings=None):
    return _orig.get_requires_for_build_wheel(config_settings) + ["Cython>=3.0"]
"""


@pytest.mark.integration
def test_dynamic_cython_requirement_is_pinned_and_builds(fake: FakeIndex, layout: Layout) -> None:
    fake.sdist("dyncy", "1.0", files={
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "backend"\n'
                          'backend-path = ["_build"]\n',
        "_build/backend.py": BACKEND,
        "setup.py": 'from setuptools import Extension, setup\nsetup(name="dyncy", version="1.0", '
                    'ext_modules=[Extension("dyncy", ["dyncy.c"])])\n',
        "dyncy.c": module_c("dyncy"),
    })
    fake.start()
    path = new_recipe("dyncy==1.0", layout, client=IndexClient(layout.cache, index_url=fake.url),
                      pythons=["3.11"], hooks=True)
    r = load_recipe(path)
    assert r.requires == (f"setuptools=={SETUPTOOLS}", "cython==3.1.2")
    assert "also asks for: Cython>=3.0" in path.read_text()
    # `build --no-isolation` checks the hook's answer: without the pin it stops at "Missing dependencies"
    serve_as_url(path, fake)
    text = path.read_text().replace('"cython==3.1.2"', '"cython==3.1.3"')  # a real release on the index
    path.write_text(text)
    project = Project.load(layout)
    result = build_one(project.recipe("dyncy"), project.targets.get("bookworm-armhf"), layout, say=lambda s: None)
    assert result.ok, result.record.error


# --- 3. headers -> Debian packages from the suite's Contents index ---------------------------
def test_contents_lines_become_include_paths() -> None:
    lines = [
        b"usr/include/libxml2/libxml/parser.h                     libdevel/libxml2-dev\n",
        b"usr/include/arm-linux-gnueabihf/ffi.h                   libdevel/libffi-dev\n",
        b"usr/include/foo/config.h                                libdevel/libfoo-dev\n",
        b"usr/include/stdio.h                                     libdevel/libc6-dev\n",
        b"usr/include/png.h                                       libdevel/libpng-dev,libdevel/libpng-tools\n",
        b"usr/share/doc/libxml2-dev/copyright                     doc/libxml2-dev\n",
    ]
    m = parse_contents(lines, "arm-linux-gnueabihf")
    assert m["libxml/parser.h"] == m["libxml2/libxml/parser.h"] == "libxml2-dev"
    assert m["ffi.h"] == "libffi-dev" and m["png.h"] == "libpng-dev"
    assert "config.h" not in m and "foo/config.h" in m  # a bare name below a folder maps to nothing
    assert "stdio.h" not in m  # libc's own headers are in every sysroot


def test_contents_lines_become_library_names() -> None:
    lines = [
        b"usr/lib/arm-linux-gnueabihf/libkrb5.so                 libdevel/libkrb5-dev\n",
        b"usr/lib/arm-linux-gnueabihf/libkrb5.so.3               libs/libkrb5-3\n",
        b"usr/lib/arm-linux-gnueabihf/libsybdb.a                 devel/freetds-dev\n",
        b"usr/lib/arm-linux-gnueabihf/libm.so                    libdevel/libc6-dev\n",
        b"usr/lib/x86_64-linux-gnu/libother.so                   libdevel/libother-dev\n",
        b"usr/lib/arm-linux-gnueabihf/pkgconfig/krb5-gssapi.pc   libdevel/libkrb5-dev\n",
        b"usr/share/pkgconfig/xproto.pc                          libdevel/x11proto-dev\n",
        b"usr/lib/arm-linux-gnueabihf/libfoo/libbar.so           libdevel/libfoo-dev\n",
    ]
    m = parse_contents(lines, "arm-linux-gnueabihf")
    assert m == {"-lkrb5": "libkrb5-dev", "krb5-gssapi.pc": "libkrb5-dev", "xproto.pc": "x11proto-dev"}


# pymssql's shape: libraries added in a method, no header names them
KRB5_SETUP = """
from setuptools import Extension, setup
libraries = ['sybdb']
class build_ext(_build_ext):
    def build_extensions(self):
        libraries.extend(['gssapi_krb5', 'krb5'])
setup(ext_modules=[Extension('m', ['m.c'], libraries=libraries, extra_link_args=["-lpq", '-lm'])])
"""
LIB_MAP = {"-lkrb5": "libkrb5-dev", "-lgssapi_krb5": "libkrb5-dev", "-lsybdb": "freetds-dev", "-lpq": "libpq-dev",
           "-lsodium": "libsodium-dev", "-lxml2": "libxml2-dev", "-lz": "zlib1g-dev", "-lyaml": "libyaml-dev",
           "-lbz2": "libbz2-dev", "-lcurl": "libcurl4-openssl-dev", "-lgit2": "libgit2-dev",
           "libzmq.pc": "libzmq3-dev", "pybind11.pc": "pybind11-dev", "glib-2.0.pc": "libglib2.0-dev",
           "-luv": "libuv1-dev", "-lsnappy": "libsnappy-dev", "libcurl.pc": "libcurl4-openssl-dev"}


def test_libraries_the_build_files_name_map_to_dev_packages() -> None:
    _, data = make_sdist("krbthing", "1.0", {"setup.py": KRB5_SETUP, "m.c": "int x;\n"})
    assert target_libs(data, "krbthing-1.0.tar.gz", LIB_MAP) == ["freetds-dev", "libkrb5-dev", "libpq-dev"]
    assert target_libs(data, "krbthing-1.0.tar.gz") == []  # only names the Contents map resolves
    _, data = make_sdist("mesonthing", "1.0", {
        "meson.build": "cc = meson.get_compiler('c')\nz = cc.find_library('z')\n"
                       "zmq = dependency('libzmq', version: '>=4')\npyb = dependency('pybind11')\n"
                       "py = dependency('python3')\n",
        "src/meson.build": "glib = dependency( 'glib-2.0' )\n",
        "subprojects/uv/meson.build": "uv = cc.find_library('uv')\n",  # bundled code's build
        "tests/meson.build": "snappy = cc.find_library('snappy')\n",
        "vendored-meson/meson/meson.build": "dependency('libcurl')\n",
        "setup.cfg": "[build_ext]\nlibraries = yaml, bz2\n",
        "CMakeLists.txt": "find_library(CURL_LIB NAMES curl HINTS /opt REQUIRED)\nfind_library(GIT git2)\n",
        "pyproject.toml": "", "a.py": "libraries = ['curl']  # not a build file\n",
    })
    assert target_libs(data, "mesonthing-1.0.tar.gz", LIB_MAP, ["pybind11==3.0.1"]) == [
        "libbz2-dev", "libcurl4-openssl-dev", "libgit2-dev", "libglib2.0-dev", "libyaml-dev", "libzmq3-dev",
        "zlib1g-dev"]
    # PyNaCl's shape: it links -lsodium, and builds that from its own src/libsodium
    _, data = make_sdist("bundler", "1.0", {"setup.py": "Extension('b', ['b.c'], libraries=['sodium', 'xml2'])\n"
                                                        "cfg = {'libraries': ['z'], 'other': ['yaml']}\n",
                                            "src/libsodium/configure": "", "b.c": ""})
    assert target_libs(data, "bundler-1.0.tar.gz", LIB_MAP) == ["libxml2-dev", "zlib1g-dev"]


@pytest.mark.integration
def test_libxml_include_maps_to_libxml2_dev(layout: Layout) -> None:
    target = load_targets(layout.targets_file).get("bookworm-armhf")
    headers = header_map(target, layout.cache, say=lambda s: None)
    _, data = make_sdist("xmlthing", "1.0", {"src/x.c": "#include <libxml/parser.h>\n#include <libxslt/xslt.h>\n"
                                                      '#include "local.h"\n', "src/local.h": ""})
    assert target_libs(data, "xmlthing-1.0.tar.gz", headers) == ["libxml2-dev", "libxslt1-dev"]
    assert target_libs(data, "xmlthing-1.0.tar.gz") == []  # the hand map alone knew neither
    pyb = make_sdist("pybthing", "1.0", files={"src/w.cpp": "#include <pybind11/pybind11.h>\n"})[1]
    pyb_headers = {"pybind11/pybind11.h": "pybind11-dev"}
    assert target_libs(pyb, "pybthing-1.0.tar.gz", pyb_headers) == ["pybind11-dev"]
    # pybind11 as a build requirement ships its headers; bookworm's older -dev copy would shadow them
    assert target_libs(pyb, "pybthing-1.0.tar.gz", pyb_headers, ["pybind11==3.1.0"]) == []
    assert headers["sqlfront.h"] == "freetds-dev"  # pymssql's Cython extern header
    assert headers["-lkrb5"] == headers["-lgssapi_krb5"] == "libkrb5-dev"  # pymssql links them, no header
    assert headers["zlib.pc"] == "zlib1g-dev" and "-lm" not in headers  # libc's are in every sysroot
    _, krb = make_sdist("krbthing", "1.0", {"setup.py": KRB5_SETUP, "m.c": "#include <sqlfront.h>\n"})
    assert target_libs(krb, "krbthing-1.0.tar.gz", headers) == ["freetds-dev", "libkrb5-dev", "libpq-dev"]
    assert header_map(target, layout.cache, say=lambda s: None) == headers  # cached


def test_cython_extern_from_headers_count_as_includes() -> None:
    # pymssql: `cdef extern from "sqlfront.h":` in a .pxd was missed, so freetds-dev never
    # reached the sysroot ("sqlfront.h: No such file or directory")
    _, data = make_sdist("dbthing", "1.0", {
        "src/_db.pxd": 'cdef extern from "sqlfront.h":\n    ctypedef int DBINT\n',
        "src/_db.pyx": "cdef extern from 'sybdb.h' nogil:\n    pass\ncdef extern from \"own.h\":\n    pass\n"
                       "# extern from \"comment.h\" is not at the start of a statement\n",
        "src/own.h": "",
        "src/plain.py": 'cdef extern from "notcython.h":\n',
    })
    headers = {"sqlfront.h": "freetds-dev", "sybdb.h": "freetds-dev", "own.h": "libown-dev",
               "comment.h": "libcomment-dev", "notcython.h": "libnot-dev"}
    assert target_libs(data, "dbthing-1.0.tar.gz", headers) == ["freetds-dev"]


# --- 4. host include and library paths kept out of the cross build ----------------------------
def test_hostguard_rewrites_host_paths_into_the_sysroot(tmp_path: Path) -> None:
    sysroot = tmp_path / "sysroot"
    env = hostguard.environment({"CC": "ccache printf %s\\n", "LDSHARED": "printf %s\\n -shared", "CFLAGS": "-O2"},
                                sysroot, "arm-linux-gnueabihf", tmp_path)
    guard = tmp_path / "hostguard" / "printf"
    # the compiler word is replaced in place: distutils finds linker flags by its position
    assert env["CC"].split()[:2] == ["ccache", str(guard)] and env["LDSHARED"].split()[-1] == "-shared"
    assert env["CFLAGS"] == "-O2"
    args = ["-I/usr/include/freetype2", "-L/usr/lib/x86_64-linux-gnu", "-L/usr/local/lib",
            "/usr/lib/x86_64-linux-gnu/libz.so", f"-I{sysroot}/usr/include", "-lz", "x.c"]
    out = subprocess.run([str(guard), "%s\\n", *args], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"-I{sysroot}/usr/include/freetype2", f"-L{sysroot}/usr/lib/arm-linux-gnueabihf",
                                       f"{sysroot}/usr/lib/arm-linux-gnueabihf/libz.so", f"-I{sysroot}/usr/include",
                                       "-lz", "x.c"]
    assert "host path -L/usr/local/lib -> (dropped)" in out.stderr


def test_hostguard_puts_cxx_runtime_flags_in_front_of_cxx_compiles_only(tmp_path: Path) -> None:
    """distutils compiles .cpp with CC: the target's libstdc++ headers must reach those compiles too."""
    flags = ("-nostdinc++", "-isystem/s/usr/include/c++/10")
    env = hostguard.environment({"CC": "echo -DCC", "CXX": "echo -DCXX"}, tmp_path / "s", "arm-linux-gnueabihf",
                                tmp_path, flags)
    guard = env["CC"].split()[0]

    def run(*args: str) -> list[str]:
        return subprocess.run([guard, *args], capture_output=True, text=True, check=True).stdout.split()

    assert run("-c", "a.cpp", "-o", "a.o") == [*flags, "-c", "a.cpp", "-o", "a.o"]
    assert run("-c", "src/b.cc")[:2] == list(flags)
    assert run("-x", "c++", "-c", "in.src")[:2] == list(flags)
    assert run("-c", "a.c", "-o", "a.o") == ["-c", "a.c", "-o", "a.o"]  # C stays as it was
    assert run("-shared", "a.o", "-o", "a.so") == ["-shared", "a.o", "-o", "a.so"]


def test_hostguard_puts_the_commands_own_library_dirs_before_the_sysroots(tmp_path: Path) -> None:
    """LDFLAGS' sysroot -L folders come first; a -L of the build's own (PyNaCl's libsodium.a) must win."""
    sysroot = tmp_path / "sysroot"
    guard = hostguard.environment({"LDSHARED": "printf %s\\n -shared"}, sysroot, "arm-linux-gnueabihf",
                                  tmp_path)["LDSHARED"].split()[0]
    lib = f"-L{sysroot}/usr/lib/arm-linux-gnueabihf"

    def run(*args: str) -> list[str]:
        return subprocess.run([guard, "%s\\n", *args], capture_output=True, text=True, check=True).stdout.split()

    link = [f"-L{sysroot}/lib", f"-Wl,-rpath-link,{sysroot}/lib", lib, "a.o", "-Lbuild/temp/lib", lib,
            "-L/opt/own", "-lsodium", "-o", "a.so"]
    assert run(*link) == [f"-Wl,-rpath-link,{sysroot}/lib", "a.o", "-Lbuild/temp/lib", "-L/opt/own",
                          f"-L{sysroot}/lib", lib, lib, "-lsodium", "-o", "a.so"]
    assert run(lib, "-Lbuild") == ["-Lbuild", lib]
    assert run("-Lbuild", lib, "a.o") == ["-Lbuild", lib, "a.o"]  # already behind: left as it was
    assert run(lib, "a.o", "-lz") == [lib, "a.o", "-lz"]  # no own folder: nothing to move
    # a host folder rewritten into the sysroot counts as the sysroot's
    assert run(lib, "-L/usr/lib/x86_64-linux-gnu", "a.o") == [lib, lib, "a.o"]
    assert run(lib, f"-L{sysroot}x/lib") == [f"-L{sysroot}x/lib", lib]  # a sibling folder is not the sysroot


LEAKY_SETUP = """
from setuptools import Extension, setup
# what a setup.py that probes the build machine does
setup(name="leaky", version="1.0", ext_modules=[Extension("leaky", ["leaky.c"],
      include_dirs=["/usr/include"], library_dirs=["/usr/lib/x86_64-linux-gnu", "/usr/local/lib"],
      extra_objects=["/usr/lib/x86_64-linux-gnu/libz.so"])])
"""


@dataclass(frozen=True)
class LocalBuild:
    project: Project
    target: Target
    result: BuildResult

    def smoke_passes(self) -> bool:
        r = self.project.recipe(self.result.recipe.name)
        return smoke_test(r, self.result.wheel, get_toolchain(self.target, self.project.layout)).passed


def build_local_sdist(layout: Layout, tmp_path: Path, name: str, files: dict[str, str],
                      build_extra: str = "", target: str = "bookworm-armhf") -> LocalBuild:
    """A synthetic sdist `name` 1.0 served from `tmp_path`, built for `target` by a recipe
    of a pinned setuptools plus `build_extra` ([build] lines) that smoke-imports `name`."""
    from conftest import serve_directory, sha

    archive = tmp_path / f"{name}-1.0.tar.gz"
    archive.write_bytes(make_sdist(name, "1.0", files)[1])
    (layout.packages / name).mkdir(parents=True)
    with serve_directory(tmp_path) as url:
        (layout.packages / name / "recipe.toml").write_text(
            f'[package]\nname = "{name}"\nversion = "1.0"\n[source]\nkind = "url"\nurl = "{url}/{archive.name}"\n'
            f'sha256 = "{sha(archive)}"\n[build]\nrequires = ["setuptools=={SETUPTOOLS}"]\n{build_extra}'
            f'[smoke]\nimports = ["{name}"]\n')
        project = Project.load(layout)
        built_for = project.targets.get(target)
        result = build_one(project.recipe(name), built_for, layout, say=lambda s: None)
    return LocalBuild(project, built_for, result)


@pytest.mark.integration
def test_setup_py_with_host_library_dirs_links_the_target_zlib(layout: Layout, tmp_path: Path) -> None:
    b = build_local_sdist(layout, tmp_path, "leaky", {
        "setup.py": LEAKY_SETUP,
        "leaky.c": module_c("leaky", "#include <zlib.h>", 'if (zlibVersion()[0] != \'1\') return NULL;')})
    log = b.result.record_path.with_suffix(".log").read_text()
    assert b.result.ok, b.result.record.error
    assert "ot2wheels-hostguard: host path /usr/lib/x86_64-linux-gnu/libz.so ->" in log
    assert b.smoke_passes()


OWN_LIB_SETUP = """
import os
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

class BuildExt(build_ext):
    def build_extensions(self):
        # what PyNaCl does with its bundled libsodium: a static library of its own in the build
        # tree, linked with -L<that folder> -lz, while the sysroot has a libz.so of its own
        lib = os.path.join(self.build_temp, "lib")
        objects = self.compiler.compile(["vendor/z.c"], output_dir=self.build_temp)
        self.compiler.create_static_lib(objects, "z", output_dir=lib)
        for ext in self.extensions:
            ext.library_dirs.append(lib)
        super().build_extensions()

setup(name="ownlib", version="1.0", cmdclass={"build_ext": BuildExt},
      ext_modules=[Extension("ownlib", ["ownlib.c"], libraries=["z"], extra_link_args=["-Wl,--trace"])])
"""


@pytest.mark.integration
@pytest.mark.parametrize("target", ["bookworm-armhf", "bullseye-armhf"])
def test_a_library_the_build_makes_wins_over_the_sysroots(layout: Layout, tmp_path: Path, target: str) -> None:
    """The sysroot's -L folders come first in LDFLAGS: the link took the sysroot's libz.so and the
    extension failed to import with an undefined symbol (pynacl: crypto_aead_aegis128l_npubbytes).
    Moved behind the build's own folder they must still come before the cross gcc's own folders,
    whose glibc (2.36) is newer than bullseye's (2.31)."""
    b = build_local_sdist(layout, tmp_path, "ownlib", {
        "setup.py": OWN_LIB_SETUP,
        "vendor/z.c": "int ot2w_own_z(void) { return 42; }\n",
        "ownlib.c": module_c("ownlib", "#include <unistd.h>\nint ot2w_own_z(void);",
                             "if (ot2w_own_z() != 42 || getpid() <= 0) return NULL;")}, target=target)
    assert b.result.ok, b.result.record.error
    # ld's --trace: every file the link opened
    opened = [ln.strip() for ln in b.result.record_path.with_suffix(".log").read_text().splitlines()]
    assert any(ln.startswith("build/") and ln.endswith("/lib/libz.a") for ln in opened)  # its own libz
    libc = [ln for ln in opened if ln.endswith(("/libc.so", "/libc.so.6"))]
    sysroot = str(get_toolchain(b.target, layout).sysroot)
    assert libc and all(ln.startswith(sysroot + "/") for ln in libc), libc  # not the cross gcc's
    assert b.smoke_passes()


@pytest.mark.integration
def test_vendoring_follows_libraries_a_manylinux_policy_whitelists(layout: Layout, tmp_path: Path) -> None:
    """libraqm -> libharfbuzz -> libglib-2.0: glib is on manylinux's whitelist, not on the target,
    so auditwheel left it out and the gate refused the wheel (pillow)."""
    assert "libglib-2.0.so.0" not in get_toolchain(load_targets(layout.targets_file).get("bookworm-armhf"),
                                                   layout).system_libs()  # what makes this a test
    b = build_local_sdist(layout, tmp_path, "shaper", {
        "setup.py": 'from setuptools import Extension, setup\nsetup(name="shaper", version="1.0", '
                    'ext_modules=[Extension("shaper", ["shaper.c"], libraries=["raqm"])])\n',
        "shaper.c": module_c("shaper", "const char *raqm_version_string(void);  /* raqm.h needs freetype2's -I */",
                             "if (!raqm_version_string()) return NULL;")}, 'target-libs = ["libraqm-dev"]\n')
    assert b.result.ok, b.result.record.error
    assert b.result.record.gate.repaired
    with zipfile.ZipFile(b.result.wheel) as zf:
        vendored = {Path(n).name.split("-")[0] for n in zf.namelist() if n.startswith("shaper.libs/")}
    assert {"libraqm", "libharfbuzz", "libglib"} <= vendored, vendored
    assert b.smoke_passes()


@pytest.mark.integration
def test_openmp_extension_vendors_the_compilers_libgomp(layout: Layout, tmp_path: Path) -> None:
    """-fopenmp links the cross gcc's libgomp.so.1, which the sysroot has not: auditwheel could not
    locate it (scikit-learn, numba); the compiler's runtime folder is searched after the sysroot."""
    b = build_local_sdist(layout, tmp_path, "omp", {
        "setup.py": 'from setuptools import Extension, setup\nsetup(name="omp", version="1.0", '
                    'ext_modules=[Extension("omp", ["omp.c"], extra_compile_args=["-fopenmp"], '
                    'extra_link_args=["-fopenmp"])])\n',
        "omp.c": module_c("omp", "#include <omp.h>", "if (omp_get_max_threads() < 1) return NULL;")})
    assert b.result.ok, b.result.record.error
    with zipfile.ZipFile(b.result.wheel) as zf:
        assert any(n.startswith("omp.libs/libgomp") for n in zf.namelist()), zf.namelist()
    assert b.smoke_passes()


BUNDLED_SETUP = """
import subprocess
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

class BuildExt(build_ext):
    def run(self):
        # what uvloop (libuv) and gevent (libev, c-ares) do: the bundled library's configure, no --host
        subprocess.run(["sh", "./configure"], cwd="vendor", check=True)
        super().run()

setup(name="bundled", version="1.0", cmdclass={"build_ext": BuildExt},
      ext_modules=[Extension("bundled", ["bundled.c"], include_dirs=["vendor"])])
"""
BUNDLED_CONFIGURE_AC = """AC_INIT([vendored], [1.0])
AC_PROG_CC
AC_CHECK_SIZEOF([long])
AC_SUBST([SIZEOF_LONG], [$ac_cv_sizeof_long])
AC_CONFIG_FILES([vendored.h])
AC_OUTPUT
"""


def autoconf_configure(tmp_path: Path) -> str:
    """A real autoconf-generated configure script for BUNDLED_CONFIGURE_AC."""
    try:
        hosttools.ensure([hosttools.HostTool("autoconf", "autoconf")], log=lambda m: None)
    except ToolchainError as exc:
        pytest.skip(str(exc))
    work = tmp_path / "ac"
    work.mkdir()
    (work / "configure.ac").write_text(BUNDLED_CONFIGURE_AC)
    subprocess.run(["autoconf"], cwd=work, check=True, capture_output=True)
    return (work / "configure").read_text()


@pytest.mark.integration
def test_bundled_configure_cross_compiles_for_the_target(layout: Layout, tmp_path: Path) -> None:
    """A setup.py that runs a bundled autoconf ./configure without --host: CONFIG_SITE makes it a
    cross configure for the target (it stopped at "cannot run C compiled programs")."""
    b = build_local_sdist(layout, tmp_path, "bundled", {
        "setup.py": BUNDLED_SETUP,
        "vendor/configure": autoconf_configure(tmp_path),
        "vendor/vendored.h.in": "#define VENDORED_SIZEOF_LONG @SIZEOF_LONG@\n",
        # configured for the build machine (8 on x86-64) it would not compile for 32-bit ARM
        "bundled.c": module_c("bundled", '#include "vendored.h"\n'
                              '_Static_assert(VENDORED_SIZEOF_LONG == sizeof(long), "configured for another machine");'),
    })
    log = b.result.record_path.with_suffix(".log").read_text()
    assert b.result.ok, b.result.record.error
    assert "checking whether we are cross compiling... yes" in log
    assert "checking size of long... 4" in log
    assert b.smoke_passes()


# --- 5. official cross switches, as data --------------------------------------------------------
def test_cross_switches_reach_the_generated_recipe(fake: FakeIndex, layout: Layout) -> None:
    shutil.copy(REPO / "toolchain" / "cross-switches.toml", layout.root / "toolchain")
    fake.sdist("grpcio", "1.70.0", files={"setup.py": "", "grpc/__init__.py": ""})
    fake.start()
    r = load_recipe(new_recipe("grpcio==1.70.0", layout, client=IndexClient(layout.cache, index_url=fake.url),
                               pythons=["3.11"]))
    assert dict(r.env)["GRPC_BUILD_WITH_BORING_SSL_ASM"] == "0"
    assert dict(r.env)["GRPC_PYTHON_BUILD_SYSTEM_OPENSSL"] == "1"
    fake.sdist("matplotlib", "3.10.0", files={"setup.py": "", "matplotlib/__init__.py": ""})
    r = load_recipe(new_recipe("matplotlib==3.10.0", layout, client=IndexClient(layout.cache, index_url=fake.url),
                               pythons=["3.11"]))
    assert r.config_settings == ("setup-args=-Dsystem-freetype=true", "setup-args=-Dsystem-qhull=true")


def test_cross_switches_file_is_validated(tmp_path: Path) -> None:
    assert load_cross_switches(REPO / "toolchain" / "cross-switches.toml")  # the shipped one loads
    bad = tmp_path / "cross-switches.toml"
    bad.write_text('[projects.foo]\nenv = { A = "1" }\nwhy = "docs"\nflags = 1\n')
    with pytest.raises(ConfigError, match=r"\[projects.foo\]"):
        load_cross_switches(bad)
    bad.write_text('[projects.foo]\nenv = { A = 1 }\nwhy = "docs"\n')
    with pytest.raises(ConfigError, match="env must be a table"):
        load_cross_switches(bad)
    bad.write_text('[projects.foo]\nconfig-settings = ["-Dx"]\nwhy = "docs"\n')
    with pytest.raises(ConfigError, match="config-settings must be a list of 'KEY=VALUE'"):
        load_cross_switches(bad)
    assert sys.version_info >= (3, 11)
