"""Write a first recipe for an sdist on the index: pinned, validated, meant to be edited by a person.

From the sdist (downloaded and checked against the index's sha256) it reads:
- `pyproject.toml` `[build-system]`: the build requirements, each pinned to the newest release
  every target's build Python (the target's X.Y) can use, and the backend;
- the top-level import names (`*.egg-info/top_level.txt`, else the package folders), which
  become the smoke test;
- `#include` lines of its C/C++ sources, to suggest the sysroot libraries it links (target-libs).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .errors import ConfigError, PlanError, SourceError
from .fsutil import atomic_write
from .paths import Layout
from .plan import Plan, _filename_version, _specifier
from .pypi import IndexClient, IndexFile, read_sdist_member, sdist_members
from .recipes import parse_recipe
from .rust import DEBIAN_STD_PACKAGE, RUST_BACKENDS
from .tomlfile import toml_str as _toml_str

# Header a C source includes -> the Debian -dev package that provides it in the sysroot.
INCLUDE_LIBS = {
    "ffi.h": "libffi-dev",
    "openssl/": "libssl-dev",
    "yaml.h": "libyaml-dev",
    "zlib.h": "zlib1g-dev",
    "expat.h": "libexpat1-dev",
    "sqlite3.h": "libsqlite3-dev",
    "bzlib.h": "libbz2-dev",
    "lzma.h": "liblzma-dev",
    "jpeglib.h": "libjpeg-dev",
    "png.h": "libpng-dev",
    "uuid/uuid.h": "uuid-dev",
}
BACKENDS = {
    "setuptools.build_meta": "setuptools",
    "setuptools.build_meta:__legacy__": "setuptools",
    "maturin": "maturin",
}
_NOT_MODULES = {"test", "tests", "testing", "doc", "docs", "bench", "benchmarks", "examples", "example",
                "tools", "scripts", "setup", "conftest", "build", "ci"}
_INCLUDE = re.compile(rb'^\s*#\s*include\s*(<[^>]+>|"[^"]+")', re.M)
_EXTENSION = re.compile(r"""Extension\(\s*(?:name\s*=\s*)?['"]([A-Za-z_][\w.]*)['"]""")
_SOURCE_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".pyx", ".pxd")


def _sdist(files: list[IndexFile], name: str, version: Version) -> IndexFile:
    sdists = [f for f in files if f.is_sdist and _filename_version(f.filename) == version]
    if not sdists:
        raise SourceError(f"{name}=={version}: no sdist on the index; a recipe needs source to build from")
    sdists.sort(key=lambda f: (not f.filename.endswith(".tar.gz"), f.filename))
    return sdists[0]


def backend_name(build_backend: str, requires: Iterable[str]) -> str:
    names = {canonicalize_name(Requirement(r).name) for r in requires}
    if build_backend.startswith("setuptools") and "setuptools-rust" in names:
        return "setuptools-rust"
    return BACKENDS.get(build_backend, "other")


def _build_environment(python: str) -> dict[str, str]:
    """Markers of the build Python: this host, but the target's CPython X.Y."""
    env = {k: str(v) for k, v in default_environment().items()}
    env.update(python_version=python, python_full_version=f"{python}.0")
    return env


def pin_build_requirements(requires: list[str], pythons: list[str], client: IndexClient) -> list[str]:
    """Each requirement pinned (==) to the newest final release every build Python can install.

    A recipe builds for every target, so the pins must suit each target's Python X.Y (the build
    Python has the target's minor version). A requirement with a marker keeps it and only has to
    suit the Pythons the marker selects.
    """
    if not pythons:
        raise ConfigError("no target Python to pin build requirements for")
    pinned = []
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise ConfigError(f"build requirement {text!r} is not valid: {exc}") from None
        active = [py for py in pythons if req.marker is None or req.marker.evaluate(_build_environment(py))]
        if not active:
            continue
        wanted = [Version(f"{py}.0") for py in active]
        fits: dict[Version, set[Version]] = {}
        for f in client.files(req.name):
            v = _filename_version(f.filename)
            if v is None or f.yanked or v.is_prerelease or not req.specifier.contains(v):
                continue
            spec = _specifier(f.requires_python) if f.requires_python else None
            fits.setdefault(v, set()).update(py for py in wanted if spec is None or spec.contains(py, prereleases=True))
        good = [v for v, ok in fits.items() if ok >= set(wanted)]
        if not good:
            raise PlanError(f"build requirement {text!r}: no release on the index fits CPython {', '.join(active)}")
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f"; {req.marker}" if req.marker is not None else ""
        pinned.append(f"{canonicalize_name(req.name)}{extras}=={max(good)}{marker}")
    return pinned


def target_pythons(layout: Layout, requires_python: str | None = None) -> list[str]:
    """The Python X.Y of every target in targets.toml that the sdist's Requires-Python admits."""
    from .targets import load_targets

    spec = _specifier(requires_python) if requires_python else None
    versions = {t.python for t in load_targets(layout.targets_file).targets.values()}
    return sorted((v for v in versions if spec is None or spec.contains(Version(f"{v}.0"), prereleases=True)),
                  key=Version)


def import_names(members: list[str], data: bytes, filename: str, pyproject: dict) -> list[str]:
    """Top-level modules the sdist installs: top_level.txt, maturin's module-name, else package folders."""
    tops = [m for m in members if m.count("/") in (1, 2) and m.endswith(".egg-info/top_level.txt")]
    if tops:
        member = min(tops, key=lambda m: m.count("/")).split("/", 1)[1]
        names = [n for n in read_sdist_member(data, filename, member).decode().split() if n.isidentifier()]
        if names:
            return sorted(set(names))
    module = pyproject.get("tool", {}).get("maturin", {}).get("module-name")
    if module:
        return [module.split(".")[0]]
    by_depth: dict[int, set[str]] = {1: set(), 2: set()}
    for m in members:
        parts = PurePosixPath(m).parts[1:]  # drop NAME-VER/
        # pkg/__init__.py (depth 1) or src/pkg/__init__.py, lib/pkg/__init__.py (depth 2)
        if len(parts) in (2, 3) and parts[-1] == "__init__.py":
            pkg = parts[-2]
            if pkg.isidentifier() and not {p.lower() for p in parts[:-1]} & _NOT_MODULES:
                by_depth[len(parts) - 1].add(pkg)
    return sorted(by_depth[1] or by_depth[2])


def extension_modules(data: bytes, filename: str) -> list[str]:
    """Dotted names of the extension modules setup.py declares with a literal name."""
    try:
        setup_py = read_sdist_member(data, filename, "setup.py").decode(errors="replace")
    except SourceError:
        return []
    names = set(_EXTENSION.findall(setup_py))
    return sorted(n for n in names if not {p.lower() for p in n.split(".")} & _NOT_MODULES)


def target_libs(data: bytes, filename: str) -> list[str]:
    """-dev packages whose headers the sdist's C/C++/Cython sources include."""
    import io
    import tarfile
    import zipfile

    found: set[bytes] = set()
    own: set[str] = set()
    if filename.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            own = {PurePosixPath(n).name for n in zf.namelist()}
            for name in zf.namelist():
                if name.endswith(_SOURCE_SUFFIXES):
                    found.update(_INCLUDE.findall(zf.read(name)))
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            own = {PurePosixPath(i.name).name for i in tf.getmembers()}
            for info in tf.getmembers():
                if info.isfile() and info.name.endswith(_SOURCE_SUFFIXES):
                    fh = tf.extractfile(info)
                    if fh is not None:
                        found.update(_INCLUDE.findall(fh.read()))
    headers = set()
    for raw in found:
        h = raw.decode(errors="replace")
        if h.startswith('"') and PurePosixPath(h[1:-1]).name in own:
            continue  # "bundled.h": the sdist's own header
        headers.add(h[1:-1])
    libs = {lib for h in headers for key, lib in INCLUDE_LIBS.items()
            if (h.startswith(key) if key.endswith("/") else h == key)}
    return sorted(libs)


def _toml_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def render_recipe(name: str, version: str, sdist: IndexFile, requires: list[str], backend: str,
                  backend_string: str, imports: list[str], libs: list[str], python: str | None,
                  summary: str) -> str:
    lines = [
        f"# Generated by `invoke recipe.new {name}=={version}` from {sdist.filename}. Edit freely.",
        "",
        "[package]",
        f"name = {_toml_str(name)}",
        f"version = {_toml_str(version)}",
    ]
    if summary:
        lines.append(f"summary = {_toml_str(summary)}")
    lines += [
        "",
        "[source]",
        'kind = "pypi"',
        f"filename = {_toml_str(sdist.filename)}",
        f"sha256 = {_toml_str(sdist.sha256)}",
        "",
        "[build]",
        f"# build-backend in the sdist's pyproject.toml: {backend_string}",
        f"backend = {_toml_str(backend)}",
        "# [build-system] requires, pinned to the newest release every target's build Python can use",
        f"requires = {_toml_list(requires)}",
        "# Debian -dev packages for headers its C sources include (check and extend)",
        f"target-libs = {_toml_list(libs)}",
    ]
    if python:
        lines.append(f"python = {_toml_str(python)}")
    lines += [
        "",
        "[smoke]",
        "# every top-level module and literal setup.py Extension; add `code = ...` to exercise it",
        f"imports = {_toml_list(imports)}",
        "",
    ]
    return "\n".join(lines)


def new_recipe(spec: str, layout: Layout, force: bool = False, client: IndexClient | None = None,
               pythons: list[str] | None = None) -> Path:
    """Write packages/NAME/recipe.toml for `NAME==VERSION`; returns its path.

    `pythons`: the target Python X.Y versions the build requirements must suit (default: those
    of every target in targets.toml that the sdist supports).
    """
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise ConfigError(f"{spec!r} is not NAME==VERSION: {exc}") from None
    pins = [s for s in req.specifier if s.operator == "=="]
    if len(pins) != 1 or "*" in pins[0].version:
        raise ConfigError(f"{spec!r}: give one exact version, like NAME==1.2.3")
    name, version = canonicalize_name(req.name), Version(pins[0].version)
    path = layout.packages / name / "recipe.toml"
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; edit it, or pass --force to overwrite it")
    client = client or IndexClient(layout.cache)
    sdist = _sdist(client.files(name), name, version)
    data = client.download(sdist)
    members = sdist_members(data, sdist.filename)
    try:
        pyproject = tomllib.loads(read_sdist_member(data, sdist.filename, "pyproject.toml").decode())
    except SourceError:
        pyproject = {}
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"{sdist.filename}: pyproject.toml is not valid TOML: {exc}") from None
    build_system = pyproject.get("build-system", {})
    raw_requires = build_system.get("requires", ["setuptools>=40.8.0", "wheel"])  # PEP 517 default
    backend_string = build_system.get("build-backend", "setuptools.build_meta:__legacy__")
    pythons = pythons or target_pythons(layout, sdist.requires_python)
    requires = pin_build_requirements(list(raw_requires), pythons, client)
    try:
        summary = client.metadata(sdist).summary
    except Exception:
        summary = ""
    tops = import_names(members, data, sdist.filename, pyproject) or [name.replace("-", "_")]
    imports = tops + [e for e in extension_modules(data, sdist.filename) if e not in tops]
    backend = backend_name(backend_string, requires)
    libs = target_libs(data, sdist.filename)
    if backend in RUST_BACKENDS:  # the target's Rust standard library goes into the sysroot
        libs = sorted({*libs, DEBIAN_STD_PACKAGE})
    text = render_recipe(name, str(version), sdist, requires, backend, backend_string, imports, libs,
                         sdist.requires_python, summary)
    parse_recipe(tomllib.loads(text), path)  # what we write must load
    atomic_write(path, text)
    return path


def write_missing_recipes(plan: Plan, layout: Layout, client: IndexClient | None = None) -> list[Path]:
    """A recipe for every must-build distribution of `plan` that has none yet."""
    client = client or IndexClient(layout.cache)
    written = []
    for entry in plan.must_build:
        if (layout.packages / entry.name / "recipe.toml").exists():
            continue
        written.append(new_recipe(f"{entry.name}=={entry.version}", layout, client=client))
    return written
