"""Write a first recipe for an sdist on the index: pinned, validated, meant to be edited by a person.

From the sdist (downloaded and checked against the index's sha256) it reads:
- `pyproject.toml` `[build-system]`: the build requirements, each pinned to the newest release
  every target's build Python (the target's X.Y) can use, and the backend;
- the top-level import names (`*.egg-info/top_level.txt`, else the package folders), which
  become the smoke test;
- `#include` lines of its C/C++ sources, to suggest the sysroot libraries it links (target-libs),
  through a small hand map and, when given, the header -> package map of the target suite's
  Debian `Contents` index (ot2wheels.debcontents); with that map also the libraries its build
  files name without a header (`libraries=[...]`, `-lNAME`, Meson's `dependency()` and
  `find_library()`, CMake's `find_library()` and `pkg_check_modules()`);
- dynamic build requirements, from the backend's own `get_requires_for_build_wheel` hook run in
  a build environment of the static ones (`hooks=True`);
- official cross-build switches of known projects (toolchain/cross-switches.toml) -> [build] env.

The smoke imports are a first guess; after the first build `refine_smoke_imports` replaces them
with what the built wheel really ships (`invoke recipe.refine`, and `invoke survey` does it).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .errors import BuildError, ConfigError, PlanError, SourceError
from .fsutil import atomic_write, scrubbed_env
from .paths import Layout
from .plan import Plan, _filename_version, _specifier
from .pypi import IndexClient, IndexFile, read_sdist_member, sdist_members
from .recipes import parse_recipe
from .rust import DEBIAN_STD_PACKAGE, RUST_BACKENDS
from .tomlfile import read_toml
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
    # headers Debian keeps in a subfolder (the Contents map knows them as freetype2/ft2build.h,
    # hdf5/serial/hdf5.h; the sources include them bare, found through pkg-config's -I)
    "ft2build.h": "libfreetype-dev",
    "hdf5.h": "libhdf5-dev",
}
BACKENDS = {
    "setuptools.build_meta": "setuptools",
    "setuptools.build_meta:__legacy__": "setuptools",
    "maturin": "maturin",
    # the crossfiles backends: without the name the build gets no cross file and meson/CMake
    # configure for the build machine ("Build type: native build", sanity check not executable)
    "mesonpy": "meson-python",
    "scikit_build_core.build": "scikit-build-core",
}
# Header folders that a PyPI build requirement ships (its own include dir, newer than Debian's):
# with the requirement in [build-system], the sysroot's -dev copy would shadow it (contourpy:
# "PYBIND11_MODULE passed 3 arguments" against bookworm's pybind11 2.10).
FROM_BUILD_REQUIREMENT = {"pybind11/": "pybind11", "nanobind/": "nanobind"}
_WRAPPABLE = ("mesonpy", "scikit_build_core.build")  # backends an in-tree backend may wrap
_NOT_MODULES = {"test", "tests", "testing", "doc", "docs", "bench", "benchmarks", "examples", "example",
                "tools", "scripts", "setup", "conftest", "build", "ci"}
_INCLUDE = re.compile(rb'^\s*#\s*include\s*(<[^>]+>|"[^"]+")', re.M)
# Cython names the C headers it includes in `cdef extern from "sqlfront.h":` (.pyx/.pxd), not #include
_CYTHON_EXTERN = re.compile(rb'^\s*(?:cdef\s+)?extern\s+from\s+(<[^>]+>|"[^"]+"|\'[^\']+\')', re.M)
# Libraries build files name (-> `-lNAME` / `NAME.pc` keys of the Contents map). Python and
# setup.cfg: `libraries = [...]`, `libraries.extend([...])`, `libraries=` in Extension(...),
# `"libraries": [...]` in a dict of settings.
_PY_LIBRARIES = re.compile(rb"""\blibraries['"]?\s*(?:\+?=|:|\.extend\(|\.append\()\s*(\[[^\]]*\]|\([^)]*\)|'[^']*'|"[^"]*")""")
_CFG_LIBRARIES = re.compile(rb"^\s*libraries\s*=[ \t]*(.+)$", re.M)
_DASH_L = re.compile(rb"""(?:^|(?<=[\s"'\[(,=]))-l([A-Za-z0-9_][\w+.-]*)(?=$|[\s"',\])])""", re.M)
_QUOTED = re.compile(rb"""['"]([A-Za-z0-9_][\w+.-]*)['"]""")
_MESON_LIB = re.compile(rb"""\bfind_library\(\s*['"]([\w+.-]+)['"]""")
_MESON_DEP = re.compile(rb"""\bdependency\(\s*['"]([\w+.-]+)['"]""")
_CMAKE_LIB = re.compile(rb"\bfind_library\s*\(\s*\w+\s+(?:NAMES\s+)?([^)]*)\)", re.I)
_CMAKE_PC = re.compile(rb"\bpkg_(?:check|search)_modules?\s*\(\s*\w+\s+([^)]*)\)", re.I)
_CMAKE_WORD = re.compile(rb"^[a-z0-9_][\w+.-]*$")  # keywords (HINTS, REQUIRED, ...) are upper case
# Folders whose build files belong to bundled third-party code, not to the project's own build.
_VENDORED = {"third_party", "thirdparty", "3rdparty", "vendor", "vendored", "deps", "external", "extern",
             "subprojects", "contrib"}
_EXTENSION = re.compile(r"""Extension\(\s*(?:name\s*=\s*)?['"]([A-Za-z_][\w.]*)['"]""")
_SOURCE_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".pyx", ".pxd", ".pxi")


def _sdist(files: list[IndexFile], name: str, version: Version) -> IndexFile:
    sdists = [f for f in files if f.is_sdist and _filename_version(f.filename, name) == version]
    if not sdists:
        raise SourceError(f"{name}=={version}: no sdist on the index; a recipe needs source to build from")
    sdists.sort(key=lambda f: (not f.filename.endswith(".tar.gz"), f.filename))
    return sdists[0]


def backend_name(build_backend: str, requires: Iterable[str], in_tree: bool = False) -> str:
    """The recipe's backend name; `in_tree`: the sdist's own backend module (backend-path)."""
    names = {canonicalize_name(Requirement(r).name) for r in requires}
    if build_backend.startswith("setuptools") and "setuptools-rust" in names:
        return "setuptools-rust"
    if build_backend not in BACKENDS and in_tree:
        # An in-tree wrapper around meson-python or scikit-build-core (duckdb's
        # duckdb_packaging.build_backend): without the name the build gets no cross file and
        # configures for the build machine (duckdb: -march=x86-64-v3 for an ARM compiler).
        wrapped = {BACKENDS[b] for b in _WRAPPABLE if BACKENDS[b] in names}
        if len(wrapped) == 1:
            return wrapped.pop()
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
            v = _filename_version(f.filename, req.name)
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


def split_target_side(pinned: list[str], raw: list[str], pythons: list[str]) -> tuple[list[str], list[str]]:
    """(host requirements, target-requires): a build requirement the build compiles against (numpy)
    is taken for the TARGET (ot2wheels.targetdeps); the host copy that runs the build is added by
    the build at the target copy's version, so it leaves the host pins.

    The target range is the sdist's, for the requirements whose marker some target Python selects;
    an `==` pin (oldest-supported-numpy's habit: build against the oldest) becomes `>=`, since a
    build against N runs with every later N of the same ABI."""
    from .targetdeps import TARGET_SIDE

    specs: dict[str, list[str]] = {}
    for text in raw:
        req = Requirement(text)
        dep = TARGET_SIDE.get(canonicalize_name(req.name))
        if dep is None or not any(req.marker is None or req.marker.evaluate(_build_environment(py))
                                  for py in pythons):
            continue
        mine = specs.setdefault(dep, [])
        if canonicalize_name(req.name) == dep:
            mine += [f">={s.version}" if s.operator in ("==", "===") else str(s) for s in req.specifier]
    # several marker-selected pins: the lowest floor of each kind is what every target can use
    target = sorted(f"{dep}{_loosest(spec)}" for dep, spec in specs.items())
    host = [p for p in pinned if canonicalize_name(Requirement(p).name) not in TARGET_SIDE]
    return host, target


def _loosest(specs: list[str]) -> str:
    """The specifiers, with only the lowest `>=` floor kept (one per marker-selected line)."""
    floors = [s for s in specs if s.startswith(">=")]
    rest = sorted({s for s in specs if not s.startswith(">=")})
    low = [min(floors, key=lambda s: Version(s[2:]))] if floors else []
    return ",".join(low + rest)


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


def target_libs(data: bytes, filename: str, headers: Mapping[str, str] | None = None,
                requires: Iterable[str] = ()) -> list[str]:
    """-dev packages whose headers the sdist's C/C++/Cython sources include, and whose libraries
    its build files name (`_linked_libraries`).

    The hand map INCLUDE_LIBS wins; `headers` (include path, `-lNAME` or `NAME.pc` -> Debian
    package, from the suite's Contents index, see ot2wheels.debcontents) covers the rest. Headers
    that a build requirement in `requires` ships (FROM_BUILD_REQUIREMENT) need no -dev package,
    nor do libraries the sdist bundles (a folder named like them) or a build requirement ships.
    """
    have = {canonicalize_name(Requirement(r).name) for r in requires}
    shipped = tuple(prefix for prefix, project in FROM_BUILD_REQUIREMENT.items() if project in have)
    import io
    import tarfile
    import zipfile

    found: set[bytes] = set()
    linked: set[str] = set()

    def scan(name: str, read) -> None:
        if name.endswith(_SOURCE_SUFFIXES):
            found.update(_includes(name, read()))
        elif _is_build_file(name):
            linked.update(_linked_libraries(PurePosixPath(name).name, read()))

    if filename.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            for name in names:
                scan(name, lambda name=name: zf.read(name))
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            members = tf.getmembers()
            names = [i.name for i in members]
            for info in members:
                fh = tf.extractfile(info) if info.isfile() else None
                if fh is not None:
                    scan(info.name, fh.read)
    own = {PurePosixPath(n).name for n in names}
    folders = {_folder_key(part) for n in names for part in PurePosixPath(n).parts[1:-1]}
    included = set()
    for raw in found:
        h = raw.decode(errors="replace")
        if h.startswith("'"):
            h = '"' + h[1:-1] + '"'
        if h.startswith('"') and PurePosixPath(h[1:-1]).name in own:
            continue  # "bundled.h": the sdist's own header
        included.add(h[1:-1])
    libs = set()
    for h in sorted(included):
        if h.startswith(shipped):
            continue
        hand = [lib for key, lib in INCLUDE_LIBS.items() if (h.startswith(key) if key.endswith("/") else h == key)]
        if hand:
            libs.update(hand)
        elif headers is not None and (pkg := headers.get(h)):
            libs.add(pkg)
    for key in sorted(linked):
        bare = _folder_key(key[2:] if key.startswith("-l") else key.removesuffix(".pc"))
        if {bare, "lib" + bare, bare.removeprefix("lib")} & folders:
            continue  # the sdist bundles it (PyNaCl's src/libsodium): its build makes its own
        if canonicalize_name(bare) in have:
            continue  # a build requirement ships it (numpy, pybind11)
        if headers is not None and (pkg := headers.get(key)):
            libs.add(pkg)
    return sorted(libs)


def _is_build_file(name: str) -> bool:
    """setup.py/setup.cfg at the sdist's top, meson.build and CMakeLists.txt outside vendored folders."""
    parts = PurePosixPath(name).parts[1:]
    if len(parts) == 1 and parts[0] in ("setup.py", "setup.cfg"):
        return True
    return bool(parts) and parts[-1] in ("meson.build", "CMakeLists.txt") and not any(
        p.lower() in _VENDORED | _NOT_MODULES or p.lower().startswith(("vendor", "test")) for p in parts[:-1])


def _folder_key(name: str) -> str:
    """A folder or library name compared loosely: http-parser, http_parser and HTTP.parser match."""
    return re.sub(r"[-_.]+", "_", name.lower())


def _linked_libraries(name: str, text: bytes) -> set[str]:
    """`-lNAME` and `NAME.pc` keys for the libraries a build file names (see debcontents)."""
    libs: set[bytes] = set(_DASH_L.findall(text))
    pcs: set[bytes] = set()
    if name == "setup.py":
        for group in _PY_LIBRARIES.findall(text):
            libs.update(_QUOTED.findall(group))
    elif name == "setup.cfg":
        for value in _CFG_LIBRARIES.findall(text):
            libs.update(w for w in re.split(rb"[\s,]+", value) if _CMAKE_WORD.match(w.lower()))
    elif name == "meson.build":
        libs.update(_MESON_LIB.findall(text))
        pcs.update(_MESON_DEP.findall(text))
    else:
        libs.update(w for group in _CMAKE_LIB.findall(text) for w in group.split() if _CMAKE_WORD.match(w))
        pcs.update(re.split(rb"[<>=]", w, maxsplit=1)[0]
                   for group in _CMAKE_PC.findall(text) for w in group.split() if _CMAKE_WORD.match(w))
    return {"-l" + n.decode(errors="replace") for n in libs} | {n.decode(errors="replace") + ".pc" for n in pcs}


def _includes(name: str, text: bytes) -> list[bytes]:
    """The headers a source file includes, `<x.h>` or `"x.h"` (Cython's `extern from` too)."""
    found = _INCLUDE.findall(text)
    if name.endswith((".pyx", ".pxd", ".pxi")):
        found += _CYTHON_EXTERN.findall(text)
    return found


# --- smoke imports from the built wheel ------------------------------------------------------
@dataclass(frozen=True)
class WheelSmoke:
    """What a smoke test of a built wheel checks: `imports` (modules it imports) and `load`
    (every shared object, opened with RTLD_NOW; see ot2wheels.smoke for the import it then tries)."""
    imports: tuple[str, ...]
    load: tuple[str, ...]


def _installed_paths(names: Iterable[str]) -> list[tuple[str, ...]]:
    """The wheel's files as installed under site-packages (NAME.data/platlib/x -> x)."""
    out = []
    for name in names:
        parts = PurePosixPath(name).parts
        if not parts or parts[0].endswith(".dist-info") or name.endswith("/"):
            continue
        if parts[0].endswith(".data"):
            if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                continue  # scripts, headers, data: not on sys.path
            parts = parts[2:]
        out.append(tuple(parts))
    return out


def wheel_smoke(wheel: Path) -> WheelSmoke:
    """The smoke imports and shared objects of a built wheel, right by construction:

    - a folder is a package only with an `__init__.py`; leading folders without one are namespace
      portions (`google/`), but below a package a folder without one is not importable as the
      package's code expects (debugpy's vendored `pydevd/_pydevd_bundle` wants its own sys.path);
    - `imports`: the outermost regular package of each tree that holds a shared object (each
      top-level module and package when none does);
    - `load`: every shared object (extension or plain library such as pycryptodome's ctypes
      `_ARC4`): opening it checks its native symbols without assuming it is a Python module.
    Test-only trees are left out: shipped or not, a smoke test must not depend on them."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            paths = _installed_paths(zf.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{wheel}: not a readable wheel: {exc}") from None
    packages = {p[:-1] for p in paths if p[-1] == "__init__.py"}
    imports: set[str] = set()
    load: set[str] = set()
    native_roots: set[str] = set()  # the import roots that hold shared objects
    for parts in paths:
        if {p.lower() for p in parts[:-1]} & _NOT_MODULES:
            continue
        leaf = parts[-1]
        if leaf.endswith(".so") or ".so." in leaf:
            load.add("/".join(parts))
            first = next((i for i in range(1, len(parts)) if parts[:i] in packages), None)
            if first is not None:
                native_roots.add(".".join(parts[:first]))
            continue
        if not leaf.endswith(".py") or not all(p.isidentifier() for p in (*parts[:-1], leaf[:-3])):
            continue
        if leaf[:-3].lower() in _NOT_MODULES:
            continue
        # the outermost regular package above the file, after any namespace portions
        first = next((i for i in range(1, len(parts)) if parts[:i] in packages), None)
        if first is None:
            if len(parts) == 1:
                imports.add(leaf[:-3])  # a top-level module
            continue
        if all(parts[:i] in packages for i in range(first, len(parts))):
            imports.add(".".join(parts[:first]))
    # Roots with compiled code are what the build made; a pure root is upstream's Python and may
    # need an optional extra to import (black's `blackd` wants aiohttp from black[d]).
    imports = {i for i in imports if i in native_roots} or imports
    return WheelSmoke(tuple(sorted(imports)), tuple(sorted(load)))


_SMOKE_HEADER = re.compile(r"^\[smoke\]\s*$", re.M)
_IMPORTS_LINE = re.compile(r"^(?:# from the built wheel .*\n)?imports\s*=\s*\[[^\]]*\]\n?", re.M)
_LOAD_LINE = re.compile(r"^load\s*=\s*\[[^\]]*\]\n?", re.M)


def refine_smoke_imports(recipe_path: Path, wheel: Path) -> WheelSmoke:
    """Replace `[smoke] imports` and `load` of the recipe with what `wheel` ships; returns them."""
    found = wheel_smoke(wheel)
    if not found.imports and not found.load:
        raise ConfigError(f"{wheel.name} ships no importable module; keep {recipe_path}'s [smoke] imports")
    text = recipe_path.read_text()
    header = _SMOKE_HEADER.search(text)
    if header is None or _IMPORTS_LINE.search(text, header.end()) is None:
        raise ConfigError(f"{recipe_path}: no `imports = [...]` line in [smoke] to replace")
    body = _LOAD_LINE.sub("", text[header.end():])
    line = _IMPORTS_LINE.search(body)
    assert line is not None  # found above; removing `load` lines cannot remove it
    lines = f"# from the built wheel {wheel.name}\nimports = {_toml_list(found.imports)}\n"
    if found.load:
        lines += f"load = {_toml_list(found.load)}\n"
    new = text[:header.end()] + body[:line.start()] + lines + body[line.end():]
    parse_recipe(tomllib.loads(new), recipe_path)  # still a valid recipe
    atomic_write(recipe_path, new)
    return found


# --- dynamic build requirements ----------------------------------------------------------------
# Run in the build environment, whose `build` frontend calls the backend's hook in a subprocess.
_HOOK = ("import json, sys\nfrom build import ProjectBuilder\n"
         "print(json.dumps(sorted(ProjectBuilder(sys.argv[1]).get_requires_for_build('wheel'))))\n")


@dataclass(frozen=True)
class DynamicRequires:
    requires: tuple[str, ...]  # beyond the static ones, as the hook gave them
    note: str  # one line for the recipe: what was found, or why nothing could be asked


def hook_requires(tree: Path, python: Path, env: Mapping[str, str] | None = None, timeout: float = 600) -> list[str]:
    """What the backend's `get_requires_for_build_wheel` asks for, run with `python` (a build env)
    and the recipe's [build] env (a backend's answer may depend on it)."""
    try:
        out = subprocess.run([str(python), "-c", _HOOK, str(tree)], cwd=tree, capture_output=True, text=True,
                             env={**scrubbed_env(), **(env or {})}, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildError(f"get_requires_for_build_wheel of {tree.name} did not finish in {timeout:.0f}s") from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"get_requires_for_build_wheel of {tree.name} failed: {last}")
    return [str(r) for r in json.loads(lines[-1])]


def dynamic_requires(data: bytes, filename: str, static: list[str], python: Path, cache: Path,
                     env: Mapping[str, str] | None = None) -> DynamicRequires:
    """The sdist's dynamic build requirements: the hook run in a venv of the (pinned) static ones.

    A hook that fails is not fatal (the recipe still gets written): the note says why.
    """
    from . import buildenv, sources

    have = {canonicalize_name(Requirement(r).name) for r in static}
    with tempfile.TemporaryDirectory(prefix="recipe-new.") as tmp:
        archive = Path(tmp) / filename
        archive.write_bytes(data)
        try:
            tree = sources.extract(archive, Path(tmp) / "src")
            env_python = buildenv.ensure_build_env(python, tuple(static), cache)
            asked = hook_requires(tree, env_python, env)
        except (BuildError, SourceError) as exc:
            first = str(exc).splitlines()[0]
            return DynamicRequires((), f"dynamic build requirements unknown (the hook could not run: {first})")
    extra = tuple(r for r in asked if canonicalize_name(Requirement(r).name) not in have)
    if not extra:
        return DynamicRequires((), "get_requires_for_build_wheel asks for nothing beyond [build-system] requires")
    return DynamicRequires(extra, f"get_requires_for_build_wheel also asks for: {', '.join(extra)} (pinned below)")


# --- official cross-build switches, as data -----------------------------------------------------
@dataclass(frozen=True)
class CrossSwitch:
    project: str
    env: dict[str, str]
    why: str
    config_settings: tuple[str, ...] = ()  # PEP 517 `-C KEY=VALUE`, e.g. a meson option of the project


def load_cross_switches(path: Path) -> dict[str, CrossSwitch]:
    """toolchain/cross-switches.toml: `[projects.NAME] env = {...}, config-settings = [...],
    why = "..."`, validated."""
    if not path.is_file():
        return {}
    data = read_toml(path)
    unknown = set(data) - {"projects"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}; allowed: ['projects']")
    out: dict[str, CrossSwitch] = {}
    for name, entry in data.get("projects", {}).items():
        where = f"{path}: [projects.{name}]"
        if not isinstance(entry, dict) or set(entry) - {"env", "why", "config-settings"}:
            raise ConfigError(f"{where}: only `env` (a table of strings), `config-settings` (a list of "
                              "'KEY=VALUE' strings) and `why` (a string) are allowed")
        env, why = entry.get("env", {}), entry.get("why", "")
        settings = entry.get("config-settings", [])
        if not isinstance(settings, list) or not all(isinstance(c, str) and "=" in c and c.split("=", 1)[0]
                                                     for c in settings):
            raise ConfigError(f"{where}: config-settings must be a list of 'KEY=VALUE' strings")
        if not isinstance(env, dict) or not all(isinstance(k, str) and k.isidentifier() and isinstance(v, str)
                                                for k, v in env.items()):
            raise ConfigError(f"{where}: env must be a table of NAME = \"value\" strings")
        if not isinstance(why, str) or not why.strip():
            raise ConfigError(f"{where}: why must say where the switch is documented")
        out[canonicalize_name(name)] = CrossSwitch(canonicalize_name(name), dict(env), why.strip(), tuple(settings))
    return out


def cross_switches_file(layout: Layout) -> Path:
    return layout.root / "toolchain" / "cross-switches.toml"


def _build_python(layout: Layout, python: str) -> Path:
    """The build Python of the first target with CPython `python` (what builds will use)."""
    from .targets import load_targets
    from .toolchains import get_toolchain

    targets = load_targets(layout.targets_file)
    for t in [*targets.select(None), *targets.targets.values()]:
        if t.python == python and t.provider != "none":
            return get_toolchain(t, layout).build_python()
    raise ConfigError(f"no target in {layout.targets_file} has CPython {python}")


def _toml_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def render_recipe(name: str, version: str, sdist: IndexFile, requires: list[str], backend: str,
                  backend_string: str, imports: list[str], libs: list[str], python: str | None,
                  summary: str, dynamic: DynamicRequires | None = None,
                  switches: CrossSwitch | None = None, target_requires: list[str] | None = None) -> str:
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
    if dynamic is not None:
        lines.insert(-3, f"# {dynamic.note}")
    if target_requires:
        lines.append("# compiled against the TARGET's copy (ot2wheels.targetdeps), not the build machine's")
        lines.append(f"target-requires = {_toml_list(target_requires)}")
    if switches is not None and (switches.env or switches.config_settings):
        lines.append(f"# official cross-build switches (toolchain/cross-switches.toml): {switches.why}")
        if switches.env:
            lines.append("env = {" + ", ".join(f"{k} = {_toml_str(v)}" for k, v in sorted(switches.env.items()))
                         + "}")
        if switches.config_settings:
            lines.append(f"config-settings = {_toml_list(switches.config_settings)}")
    if python:
        lines.append(f"python = {_toml_str(python)}")
    lines += [
        "",
        "[smoke]",
        "# a first guess from the sdist (top-level packages, literal setup.py Extensions);",
        "# `invoke recipe.refine NAME` replaces it with what the built wheel ships. Add `code = ...`",
        f"imports = {_toml_list(imports)}",
        "",
    ]
    return "\n".join(lines)


def new_recipe(spec: str, layout: Layout, force: bool = False, client: IndexClient | None = None,
               pythons: list[str] | None = None, headers: Mapping[str, str] | None = None,
               hooks: bool = False) -> Path:
    """Write packages/NAME/recipe.toml for `NAME==VERSION`; returns its path.

    `pythons`: the target Python X.Y versions the build requirements must suit (default: those
    of every target in targets.toml that the sdist supports). `headers`: include path -> Debian
    package (ot2wheels.debcontents.header_map). `hooks`: also ask the backend's
    get_requires_for_build_wheel (builds a build environment; needs the build Python).
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
    switches = load_cross_switches(cross_switches_file(layout)).get(name)
    dynamic = None
    if hooks:
        newest = max(pythons, key=Version)  # the static pins suit every target Python
        dynamic = dynamic_requires(data, sdist.filename, requires, _build_python(layout, newest), layout.cache,
                                   switches.env if switches else None)
        requires += pin_build_requirements(list(dynamic.requires), pythons, client)
    requires, target_requires = split_target_side(
        requires, [*raw_requires, *(dynamic.requires if dynamic else ())], pythons)
    try:
        summary = client.metadata(sdist).summary
    except Exception:
        summary = ""
    tops = import_names(members, data, sdist.filename, pyproject) or [name.replace("-", "_")]
    imports = tops + [e for e in extension_modules(data, sdist.filename) if e not in tops]
    backend = backend_name(backend_string, requires, in_tree=bool(build_system.get("backend-path")))
    libs = target_libs(data, sdist.filename, headers, requires)
    if backend in RUST_BACKENDS:  # the target's Rust standard library goes into the sysroot
        libs = sorted({*libs, DEBIAN_STD_PACKAGE})
    text = render_recipe(name, str(version), sdist, requires, backend, backend_string, imports, libs,
                         sdist.requires_python, summary, dynamic, switches, target_requires)
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


def built_wheel(layout: Layout, name: str) -> Path:
    """The newest wheel of `name` in dist/ whose build record says it passed (any target)."""
    from .records import BuildRecord

    found = []
    for record in layout.dist.glob(f"*/{canonicalize_name(name)}/*.json"):
        try:
            rec = BuildRecord.from_file(record)
        except Exception:  # a truncated record is no wheel to read
            continue
        if rec.result in ("passed", "reused") and rec.wheel and (record.parent / rec.wheel).is_file():
            found.append(record.parent / rec.wheel)
    if not found:
        raise ConfigError(f"no passed wheel of {name} in {layout.dist}; build it first (invoke build --recipe {name})")
    return max(found, key=lambda p: p.stat().st_mtime)
