"""Shared fixtures. Toolchains are cached across the session (and across runs) in the normal
ot2wheels cache, so the sysroots are assembled once; every test gets its own dist/."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ot2wheels.paths import Layout, default_cache_dir
from ot2wheels.pipeline import Project

REPO = Path(__file__).resolve().parents[1]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output readable
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(KiB)`: a real small filesystem (tmpfs), to hit ENOSPC for real (root only)."""
    mounts = []

    def make(size_kb: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        d = tmp_path / f"disk{len(mounts)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounts.append(d)
        return d

    yield make
    for d in mounts:
        subprocess.run(["umount", str(d)], capture_output=True)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return default_cache_dir()


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    """A checkout-shaped directory: the real targets.toml and an empty packages/."""
    root = tmp_path / "proj"
    (root / "toolchain").mkdir(parents=True)
    shutil.copy(REPO / "toolchain" / "targets.toml", root / "toolchain" / "targets.toml")
    (root / "packages").mkdir()
    return root


@pytest.fixture
def checkout_copy(project_root: Path) -> Path:
    """`project_root` plus the real noxfile.py and tasks.py: run nox and invoke in it."""
    for name in ("noxfile.py", "tasks.py"):
        shutil.copy(REPO / name, project_root / name)
    return project_root


@pytest.fixture
def layout(project_root: Path, cache_dir: Path) -> Layout:
    return Layout(root=project_root, cache=cache_dir, dist=project_root / "dist")


@pytest.fixture(scope="session")
def repo_project(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The repository's own recipes and targets, building into a private dist/."""
    dist = tmp_path_factory.mktemp("dist")
    return Project.load(Layout(root=REPO, cache=cache_dir, dist=dist))


TINY_SETUP = """
from setuptools import Extension, setup
setup(ext_modules=[Extension("tiny._tiny", ["tiny/_tiny.c"])])
"""

TINY_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "tiny"
version = "{version}"
requires-python = ">=3.9"
"""

TINY_C = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
{extra_includes}
static PyObject *add(PyObject *self, PyObject *args) {{
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    {body}
    return PyLong_FromLong(a + b);
}}
static PyMethodDef methods[] = {{{{"add", add, METH_VARARGS, "add two ints"}}, {{NULL, NULL, 0, NULL}}}};
static struct PyModuleDef mod = {{PyModuleDef_HEAD_INIT, "_tiny", NULL, -1, methods}};
PyMODINIT_FUNC PyInit__tiny(void) {{ return PyModule_Create(&mod); }}
"""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tiny_sdist(dest_dir: Path, version: str = "1.0", body: str = "", extra_includes: str = "",
                    payload: int = 0) -> Path:
    """A real sdist of a one-function C extension, written as a .tar.gz in `dest_dir`.

    `payload` bytes of random data (as a base64 literal in tiny/_payload.py) make the wheel
    about that big: they do not compress."""
    src = dest_dir / f"tiny-{version}"
    (src / "tiny").mkdir(parents=True)
    if payload:
        blob = base64.b64encode(os.urandom(payload * 3 // 4)).decode()
        (src / "tiny" / "_payload.py").write_text(f"DATA = {blob!r}\n")
    (src / "setup.py").write_text(TINY_SETUP)
    (src / "pyproject.toml").write_text(TINY_PYPROJECT.format(version=version))
    (src / "tiny" / "__init__.py").write_text("from ._tiny import add\n")
    (src / "tiny" / "_tiny.c").write_text(TINY_C.format(body=body, extra_includes=extra_includes))
    (src / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: tiny\nVersion: {version}\n")
    archive = dest_dir / f"tiny-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname=src.name)
    shutil.rmtree(src)
    return archive


TINY_RECIPE = """
[package]
name = "tiny"
version = "{version}"

[source]
kind = "url"
url = "{url}"
sha256 = "{sha256}"

[build]
requires = ["setuptools==80.9.0"]
{extra_build}

[smoke]
imports = ["tiny", "tiny._tiny"]
code = "import tiny; assert tiny.add(40, 2) == 42"
"""


def write_tiny_recipe(packages: Path, url: str, sha256: str, version: str = "1.0",
                      extra_build: str = "", name: str = "tiny") -> Path:
    d = packages / name
    d.mkdir(parents=True, exist_ok=True)
    text = TINY_RECIPE.format(version=version, url=url, sha256=sha256, extra_build=extra_build)
    (d / "recipe.toml").write_text(text.replace('name = "tiny"', f'name = "{name}"', 1))
    return d / "recipe.toml"


def build_tiny(layout: Layout, workdir: Path, target: str = "bookworm-armhf", **sdist_options: str):
    """Serve a tiny sdist on 127.0.0.1, write its recipe and cross-build it: a BuildResult."""
    from ot2wheels.build import build_one

    sdist = make_tiny_sdist(workdir, **sdist_options)
    with serve_directory(workdir) as url:
        write_tiny_recipe(layout.packages, f"{url}/{sdist.name}", sha(sdist))
        project = Project.load(layout)
        return build_one(project.recipe("tiny"), project.targets.get(target), layout, say=lambda s: None)


@pytest.fixture
def fresh_project(cache_dir: Path, tmp_path: Path) -> Project:
    """The repository's recipes and targets, the shared toolchain cache, a dist/ of this test only."""
    return Project.load(Layout(root=REPO, cache=cache_dir, dist=tmp_path / "dist"))


def sdist_from_dir(src: Path, dest_dir: Path, name: str, version: str,
                   rename: dict[str, str] | None = None, extra: dict[str, Path] | None = None) -> Path:
    """`<name>-<version>.tar.gz` in `dest_dir` of every file under `src` (`rename`: src rel -> sdist
    rel) plus `extra` (sdist rel -> file)."""
    rename = rename or {}
    files = {rename.get(f.relative_to(src).as_posix(), f.relative_to(src).as_posix()): f.read_bytes()
             for f in sorted(p for p in src.rglob("*") if p.is_file())}
    files.update({rel: f.read_bytes() for rel, f in (extra or {}).items()})
    files["PKG-INFO"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    return write_sdist(dest_dir, name, version, files)


def write_sdist(dest_dir: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """`<name>-<version>.tar.gz` in `dest_dir` holding `files` (sdist rel -> bytes), reproducibly."""
    path = dest_dir / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for rel, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size, info.mtime = len(data), 315532800
            tf.addfile(info, io.BytesIO(data))
    return path


# The head of a recipe for an sdist served on loopback (format with name, version, url, sha256).
URL_RECIPE_HEAD = """
[package]
name = "{name}"
version = "{version}"

[source]
kind = "url"
url = "{url}"
sha256 = "{sha256}"
"""
