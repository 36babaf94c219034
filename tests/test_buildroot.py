"""The Buildroot SDK toolchain, on a real stand-in SDK made from Debian armhf parts.

The stand-in is pulled over HTTP from 127.0.0.1 with `invoke sdk.pull --url`, exactly as an
OT-2 user pulls the real SDK, then a C extension is cross-built through the SDK code path and
imported by the target CPython under qemu-arm.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from rangeserver import serve
from sdk_standin import FILENAME, TRIPLET, Standin, debian_standin, standin_project

from ot2wheels import build, buildenv, gate, sdk
from ot2wheels.errors import ToolchainError
from ot2wheels.paths import Layout
from ot2wheels.targets import load_targets
from ot2wheels.toolchains import get_toolchain
from ot2wheels.toolchains.buildroot import BuildrootToolchain, capture_environment

REPO = Path(__file__).resolve().parents[1]
# Debian armhf has no CPython 3.10: the stand-in's target is bullseye's 3.9 / glibc 2.31.
STANDIN_TARGET = "ot2-standin"


def test_capture_environment_is_data_and_sourced_once(tmp_path):
    script = tmp_path / "environment-setup"
    count = tmp_path / "count"
    script.write_text(
        f'echo "a banner on stdout"\necho x >> "{count}"\n'
        'export "CC=arm-x-gcc"\nexport "PATH=/sdk/bin:$PATH"\nexport "WITH_NL=a\nb"\nalias configure=./configure\n'
    )
    env = capture_environment(script, base={"PATH": "/usr/bin", "HOME": "/root"})
    assert env == {"CC": "arm-x-gcc", "PATH": "/sdk/bin:/usr/bin", "WITH_NL": "a\nb"}
    assert count.read_text() == "x\n"
    script.write_text("echo broken >&2; false\n")
    with pytest.raises(ToolchainError, match=r"(?s)sourcing .*failed.*broken"):
        capture_environment(script)


def test_ot2_target_is_cp310_glibc_225():
    t = load_targets(REPO / "toolchain" / "targets.toml").get("ot2")
    assert (t.cp, t.glibc, t.provider, t.sdk.name) == ("cp310", (2, 25), "buildroot-sdk", "ot2")
    assert t.site == "/var/user-packages/usr/lib/python3.10/site-packages"
    assert "manylinux_2_25_armv7l" in t.platform_tags() and "manylinux_2_26_armv7l" not in t.platform_tags()


def test_toolchain_without_sdk_says_pull(tmp_path):
    layout = Layout.discover(root=REPO, cache=tmp_path)
    tc = get_toolchain(load_targets(layout.targets_file).get("ot2"), layout)
    assert isinstance(tc, BuildrootToolchain)
    with pytest.raises(ToolchainError, match=r"no 'ot2' SDK installed.*invoke sdk\.pull"):
        tc.ensure()


@dataclass
class Pulled:
    layout: Layout
    standin: Standin


@pytest.fixture(scope="module")
def pulled(tmp_path_factory) -> Pulled:
    """Assemble the stand-in SDK, serve it, and `invoke sdk.pull --url` it into a fresh cache."""
    standin = debian_standin(REPO, tmp_path_factory.getbasetemp() / "standin")
    work = tmp_path_factory.mktemp("pulled")
    root = standin_project(work / "project", STANDIN_TARGET, standin)  # unpinned: --sha256 below
    layout = Layout.discover(root=root, cache=work / "cache")
    env = {**os.environ, "OT2WHEELS_CACHE": str(layout.cache)}
    with serve(standin.tarball.parent) as srv:
        r = subprocess.run(
            [sys.executable, "-m", "invoke", "-r", str(REPO), "sdk.pull", "--url", srv.url(FILENAME),
             "--sha256", standin.sha256, "--no-progress"],
            cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return Pulled(layout=layout, standin=standin)


@pytest.fixture(scope="module")
def toolchain(pulled) -> BuildrootToolchain:
    target = load_targets(pulled.layout.targets_file).get(STANDIN_TARGET)
    tc = get_toolchain(target, pulled.layout)
    assert isinstance(tc, BuildrootToolchain)
    tc.ensure()
    return tc


@pytest.mark.integration
def test_standin_toolchain(toolchain, pulled):
    s = toolchain.installed_sdk
    assert s.sha256 == pulled.standin.sha256
    assert toolchain.sysroot == s.root / TRIPLET / "sysroot"
    # environment-setup, captured once as data
    env = toolchain.sdk_environment
    assert env["CROSS_COMPILE"] == f"{TRIPLET}-" and env["PATH"].startswith(str(s.root / "bin"))
    assert env["STAGING_DIR"] == str(toolchain.sysroot)
    cross = toolchain.env()
    assert cross["CC"] == f"{s.root}/bin/{TRIPLET}-gcc --sysroot={toolchain.sysroot}"
    assert cross["_PYTHON_HOST_PLATFORM"] == "linux-armv7l"
    assert (Path(cross["PYTHONPATH"]) / (cross["_PYTHON_SYSCONFIGDATA_NAME"] + ".py")).is_file()
    assert toolchain.build_python() == s.host_python
    assert len(toolchain.digest) == 64
    r = toolchain.run_target([str(toolchain.target_python), "-c",
                              "import sys, platform; print(sys.version_info[:2], platform.machine())"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"({', '.join(pulled.standin.python.split('.'))}) armv7l"


@pytest.mark.integration
def test_cross_build_c_extension_and_import_under_qemu(toolchain, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.c").write_text(r"""
#include <Python.h>
#include <math.h>
static PyObject *hyp(PyObject *self, PyObject *args) {
    double a, b;
    if (!PyArg_ParseTuple(args, "dd", &a, &b)) return NULL;
    return PyFloat_FromDouble(hypot(a, b));
}
static PyMethodDef methods[] = {{"hyp", hyp, METH_VARARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "hello", NULL, -1, methods};
PyMODINIT_FUNC PyInit_hello(void) { return PyModule_Create(&mod); }
""")
    (src / "setup.py").write_text(
        "from setuptools import setup, Extension\n"
        "setup(name='hello', version='1', ext_modules=[Extension('hello', ['hello.c'], libraries=['m'])])\n")
    out = tmp_path / "out"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, **toolchain.env()}
    # a venv of the SDK's host python3 with setuptools (the SDK's own python has no pip packages)
    python = buildenv.ensure_build_env(toolchain.build_python(), ("setuptools==80.9.0",), toolchain.layout.cache)
    r = subprocess.run([str(python), "setup.py", "build_ext", "-b", str(out),
                        "-t", str(tmp_path / "tmp")],
                       cwd=src, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"{TRIPLET}-gcc" in r.stdout + r.stderr  # the SDK's compiler did the work
    (so,) = out.glob("hello*.so")
    assert so.name == "hello.cpython-{}{}-arm-linux-gnueabihf.so".format(*toolchain.target.python_tuple)
    with so.open("rb") as f:
        elf = ELFFile(f)
        assert elf.header["e_machine"] == "EM_ARM"
        needed = set(re.findall(rb"GLIBC_(\d+\.\d+)", so.read_bytes()))
    floor = toolchain.target.glibc
    assert all(tuple(map(int, v.split(b"."))) <= floor for v in needed), needed
    r = toolchain.run_target([str(toolchain.target_python), "-c", "import hello; print(hello.hyp(3, 4))"],
                             env={"PYTHONPATH": str(out)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "5.0"


@pytest.mark.integration
def test_info_reports_standin(pulled):
    i = sdk.info(pulled.layout)
    assert i.sdk is not None and i.sdk.sha256 == pulled.standin.sha256 and i.matches_pin is None


def _nox(layout: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    """nox from the stand-in project: its noxfile is the checkout's (a symlink), its
    toolchain/ and packages/ are the project's own."""
    nf = layout.root / "noxfile.py"
    if not nf.exists():
        nf.symlink_to(REPO / "noxfile.py")
        (layout.root / "packages").mkdir(exist_ok=True)
        shutil.copytree(REPO / "packages" / "markupsafe", layout.root / "packages" / "markupsafe")
    env = {**os.environ, "OT2WHEELS_CACHE": str(layout.cache)}
    return subprocess.run([sys.executable, "-m", "nox", *args], cwd=layout.root, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.integration
def test_nox_build_and_qemu_smoke_of_a_recipe_through_the_sdk(pulled, toolchain):
    r = _nox(pulled.layout, "-s", "build-markupsafe", "--", "--target", STANDIN_TARGET)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pdir = pulled.layout.root / "dist" / STANDIN_TARGET / "markupsafe"
    cp = toolchain.target.cp
    (wheel,) = pdir.glob("*.whl")
    assert wheel.name == f"markupsafe-3.0.4-{cp}-{cp}-linux_armv7l.whl"
    record = json.loads(next(pdir.glob("*.json")).read_text())
    assert record["result"] == "passed" and record["gate"]["passed"] is True
    assert record["toolchain_digest"] == toolchain.digest
    log = next(pdir.glob("*.log")).read_text()
    # ccache outside, the host guard of the SDK's own gcc inside (hostguard.py)
    assert re.search(rf"CC=ccache \S*/hostguard/{TRIPLET}-gcc --sysroot={re.escape(str(toolchain.sysroot))}", log), log[:2000]
    r = _nox(pulled.layout, "-s", "test-arm", "--", "--target", STANDIN_TARGET, "markupsafe")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    record = json.loads(next(pdir.glob("*.json")).read_text())
    assert record["smoke"]["passed"] is True


@pytest.mark.integration
def test_gate_rejects_glibc_newer_than_the_target(toolchain, tmp_path):
    """reallocarray is GLIBC_2.26: fine for the stand-in's 2.31, refused at the OT-2's 2.25."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ra.c").write_text(r"""
#define _GNU_SOURCE
#include <Python.h>
#include <stdlib.h>
static PyObject *n(PyObject *s, PyObject *a) { void *p = reallocarray(NULL, 4, 4); free(p); return PyLong_FromLong(p != NULL); }
static PyMethodDef m[] = {{"n", n, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "ra", NULL, -1, m};
PyMODINIT_FUNC PyInit_ra(void) { return PyModule_Create(&d); }
""")
    (tree / "setup.py").write_text("from setuptools import setup, Extension\n"
                                   "setup(name='ra', version='1', ext_modules=[Extension('ra', ['ra.c'])])\n")
    python = buildenv.ensure_build_env(toolchain.build_python(), ("setuptools==80.9.0",), toolchain.layout.cache)
    wheel = build.pep517_wheel(tree, python, toolchain.env(), tmp_path / "out", tmp_path / "build.log")
    libs = toolchain.system_libs()
    assert "libc.so.6" in libs
    ok = gate.check(wheel, toolchain.target, libs)
    assert ok.passed, ok.summary()
    at_225 = gate.check(wheel, dataclasses.replace(toolchain.target, glibc=(2, 25)), libs)
    assert not at_225.passed
    assert any("needs GLIBC_2.26" in r and "glibc 2.25" in r for r in at_225.reasons), at_225.summary()


@pytest.mark.integration
@pytest.mark.slow
def test_rust_extension_through_the_sdk_uses_the_host_release_std(pulled, toolchain, tmp_path):
    """A Buildroot SDK has no Rust std: the host rustc's Debian std for the arch is used, the
    cdylib links the SDK sysroot's libc (gate: the stand-in's glibc floor) and imports under qemu."""
    from test_rust import demo_recipe, demo_sdist

    from ot2wheels.recipes import load_recipe
    from ot2wheels.smoke import smoke_test

    recipe_dir = demo_recipe(pulled.layout.root, demo_sdist(tmp_path, "maturin"), "maturin", target_libs=())
    recipe = load_recipe(recipe_dir)
    result = build.build_one(recipe, toolchain.target, pulled.layout, force=True, say=lambda s: None, make_jobs=1)
    log = result.record_path.with_suffix(".log").read_text()
    assert result.ok, (result.record.error or "") + log[-3000:]
    assert f"({STANDIN_TARGET}'s sysroot has no std)" in log or "# rust: rustup toolchain" in log
    assert f"{TRIPLET}-gcc" in log  # the SDK's compiler linked it
    floor = [tuple(map(int, e.max_glibc.split("."))) for e in result.record.gate.elves]
    assert floor and max(floor) <= toolchain.target.glibc
    smoke = smoke_test(recipe, result.wheel, toolchain)
    assert smoke.passed, smoke.output
