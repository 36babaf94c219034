"""Recipes as data: `packages/<name>/recipe.toml`, validated on load, never executed.

A recipe says which sdist to build (pinned by sha256), what the build needs on the host
(pinned requirements) and on the target (sysroot packages), and how to prove the wheel
works (a smoke test run in the target's CPython under qemu-arm).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import ConfigError
from .targets import Target
from .tomlfile import check_keys, read_toml

SOURCE_KINDS = ("pypi", "url", "git")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Allowed keys per table; anything else is a typo and is refused.
_SCHEMA: dict[str, set[str]] = {
    "": {"package", "source", "build", "smoke"},
    "package": {"name", "version", "summary"},
    "source": {"kind", "sha256", "url", "git", "tag", "filename"},
    "build": {"requires", "env", "patches", "target-libs", "targets", "python", "backend",
              "target-requires", "config-settings"},
    "smoke": {"imports", "load", "code", "requires"},
    # A closure recipe: [package] + [closure] only. It is not built; it names a requirement whose
    # whole dependency closure must install on the targets (see ot2wheels.plan, ot2wheels.rehearse).
    "closure": {"requirement", "constraints", "cutoff", "code", "targets"},
}


@dataclass(frozen=True)
class Source:
    kind: str  # pypi | url | git
    sha256: str  # of the sdist file (pypi, url) or of the git archive tarball (git)
    url: str | None = None
    git: str | None = None
    tag: str | None = None
    filename: str | None = None  # pypi: which sdist file, when a release has several


@dataclass(frozen=True)
class Smoke:
    imports: tuple[str, ...]
    code: str = ""
    requires: tuple[str, ...] = ()  # extra runtime requirements for the smoke test only
    # Shared objects of the wheel (paths as installed, relative to site-packages) the smoke test
    # opens with ctypes (RTLD_NOW, so an unresolved symbol fails); one that is an importable Python
    # extension is then imported too (see ot2wheels.smoke).
    load: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str  # canonical project name
    version: str
    source: Source
    smoke: Smoke
    directory: Path
    requires: tuple[str, ...] = ()  # host build requirements, pinned
    env: tuple[tuple[str, str], ...] = ()
    patches: tuple[Path, ...] = ()
    target_libs: tuple[str, ...] = ()  # extra sysroot packages (Debian names)
    targets: tuple[str, ...] = ()  # empty: every target
    python: str = ""  # a specifier on the target's Python version, empty: any
    backend: str = "setuptools"  # setuptools | maturin | setuptools-rust | meson-python | scikit-build-core
    # Python packages the *target* must have at build time (numpy for pandas): see targetdeps.
    target_requires: tuple[str, ...] = ()
    config_settings: tuple[str, ...] = ()  # KEY=VALUE, passed as `python -m build -CKEY=VALUE`
    summary: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def path(self) -> Path:
        return self.directory / "recipe.toml"

    @property
    def digest(self) -> str:
        """sha256 over the canonical recipe data and the patches' bytes (the build record's)."""
        return self._digest(self.raw)

    @property
    def build_digest(self) -> str:
        """The digest of what the build reads, part of every cache key: the recipe without its
        [smoke] table and summary, so refining a smoke test does not rebuild the wheel."""
        raw = {k: v for k, v in self.raw.items() if k != "smoke"}
        if isinstance(raw.get("package"), dict):
            raw["package"] = {k: v for k, v in raw["package"].items() if k != "summary"}
        return self._digest(raw)

    def _digest(self, raw: dict[str, Any]) -> str:
        h = hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode())
        for patch in self.patches:
            h.update(patch.name.encode() + b"\0" + patch.read_bytes())
        return h.hexdigest()

    def supports(self, target_name: str, python: str) -> bool:
        """Whether this recipe builds for a target name and its Python "X.Y"."""
        if self.targets and target_name not in self.targets:
            return False
        return not self.python or Version(python) in SpecifierSet(self.python)


def build_matrix(recipes: list[Recipe], targets: list[Target]) -> list[tuple[Recipe, Target]]:
    """Every (recipe, target) pair in which the recipe supports the target: what gets built."""
    return [(r, t) for r in recipes for t in targets if r.supports(t.name, t.python)]


def _fail(path: Path, where: str, what: str) -> ConfigError:
    return ConfigError(f"{path}: [{where}] {what}" if where else f"{path}: {what}")


def _table(data: dict[str, Any], key: str, path: Path, required: bool = True) -> dict[str, Any]:
    if key not in data:
        if required:
            raise _fail(path, "", f"missing table [{key}]")
        return {}
    value = data[key]
    if not isinstance(value, dict):
        raise _fail(path, "", f"{key!r} must be a table, got {value!r}")
    return check_keys(value, _SCHEMA[key], f"{path}: [{key}]")


def _str(table: dict[str, Any], key: str, path: Path, where: str, default: str | None = None) -> str:
    if key not in table:
        if default is None:
            raise _fail(path, where, f"missing field {key!r}")
        return default
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, f"{key} must be a non-empty string, got {value!r}")
    return value


def _strs(table: dict[str, Any], key: str, path: Path, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, where, f"{key} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _requirements(table: dict[str, Any], key: str, path: Path, where: str, pinned: bool) -> tuple[str, ...]:
    out = []
    for item in _strs(table, key, path, where):
        try:
            req = Requirement(item)
        except InvalidRequirement as exc:
            raise _fail(path, where, f"{key}: {item!r} is not a valid requirement: {exc}") from None
        if pinned and not any(s.operator in ("==", "===") for s in req.specifier):
            raise _fail(path, where, f"{key}: {item!r} must be pinned with == so builds are reproducible")
        out.append(str(req))
    return tuple(out)


def _target_requirements(build: dict[str, Any], path: Path) -> tuple[str, ...]:
    """`target-requires`: plain `name<spec>` requirements (no extras, no markers, no URLs)."""
    out = _requirements(build, "target-requires", path, "build", pinned=False)
    for item in out:
        req = Requirement(item)
        if req.extras or req.marker or req.url:
            raise _fail(path, "build", f"target-requires: {item!r} may only name a project and a "
                                       "version range (like 'numpy>=1.21.6')")
        if not req.specifier:
            raise _fail(path, "build", f"target-requires: {item!r} needs a version range, so the ABI "
                                       "the wheel is built against is known (like 'numpy==1.26.4')")
    return out


def parse_recipe(data: dict[str, Any], path: Path, known_targets: set[str] | None = None) -> Recipe:
    if "closure" in data:
        raise _fail(path, "", "this is a [closure] recipe (a requirement to plan, not a wheel to build); "
                              "load it with load_closure")
    check_keys(data, _SCHEMA[""], str(path), "table(s)")
    pkg = _table(data, "package", path)
    src = _table(data, "source", path)
    build = _table(data, "build", path, required=False)
    smoke = _table(data, "smoke", path)

    name = _str(pkg, "name", path, "package")
    if canonicalize_name(name) != canonicalize_name(path.parent.name):
        raise _fail(path, "package", f"name {name!r} does not match its folder {path.parent.name!r}")
    version = _str(pkg, "version", path, "package")
    try:
        Version(version)
    except InvalidVersion:
        raise _fail(path, "package", f"version {version!r} is not a PEP 440 version") from None

    kind = _str(src, "kind", path, "source", default="pypi")
    if kind not in SOURCE_KINDS:
        raise _fail(path, "source", f"kind {kind!r} is not one of {SOURCE_KINDS}")
    if "sha256" not in src:
        raise _fail(path, "source", "missing field 'sha256': pin the sdist's sha256 "
                    "(`pip download --no-deps --no-binary :all: NAME==VER` then `sha256sum`)")
    sha = _str(src, "sha256", path, "source").lower()
    if not _SHA256.match(sha):
        raise _fail(path, "source", f"sha256 {sha!r} is not 64 hex digits")
    if kind == "url" and "url" not in src:
        raise _fail(path, "source", "kind 'url' needs a 'url' field")
    if kind == "git" and not ("git" in src and "tag" in src):
        raise _fail(path, "source", "kind 'git' needs 'git' (repository URL) and 'tag' fields")
    source = Source(kind=kind, sha256=sha, url=src.get("url"), git=src.get("git"), tag=src.get("tag"),
                    filename=src.get("filename"))

    env = build.get("env", {})
    if not isinstance(env, dict):
        raise _fail(path, "build", f"env must be a table of strings, got {env!r}")
    for k, v in env.items():
        if not _ENV_NAME.match(k) or not isinstance(v, str):
            raise _fail(path, "build", f"env.{k}: names must be identifiers and values strings")

    patches = []
    for rel in _strs(build, "patches", path, "build"):
        patch = (path.parent / rel).resolve()
        if not patch.is_relative_to(path.parent.resolve()) or not patch.is_file():
            raise _fail(path, "build", f"patches: {rel!r} is not a file inside {path.parent}")
        patches.append(patch)

    targets = _strs(build, "targets", path, "build")
    if known_targets is not None:
        for t in targets:
            if t not in known_targets:
                raise _fail(path, "build", f"targets: unknown target {t!r}; known: {sorted(known_targets)}")
    python = build.get("python", "")
    if python:
        try:
            SpecifierSet(python)
        except InvalidSpecifier:
            raise _fail(path, "build", f"python {python!r} is not a version specifier like '>=3.9'") from None

    config_settings = _strs(build, "config-settings", path, "build")
    for item in config_settings:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise _fail(path, "build", f"config-settings: {item!r} must look like 'KEY=VALUE' "
                                       "(e.g. 'setup-args=-Dblas=openblas')")
    backend = build.get("backend", "setuptools")
    if not isinstance(backend, str) or not backend:
        raise _fail(path, "build", f"backend must be a non-empty string, got {backend!r}")

    imports = _strs(smoke, "imports", path, "smoke")
    load = _strs(smoke, "load", path, "smoke")
    if not imports and not load:
        raise _fail(path, "smoke", "imports (modules to import) or load (shared objects to open) must name "
                                   "at least one")
    for item in load:
        so = PurePosixPath(item)
        if so.is_absolute() or ".." in so.parts or not (so.suffix == ".so" or ".so." in so.name):
            raise _fail(path, "smoke", f"load: {item!r} must be a relative path of a .so in the installed wheel "
                                       "(like 'pkg/_lib.abi3.so')")
    code = smoke.get("code", "")
    if not isinstance(code, str):
        raise _fail(path, "smoke", "code must be a string of Python")
    try:
        compile(code, f"{path}:[smoke].code", "exec")  # syntax check only; runs on the target
    except SyntaxError as exc:
        raise _fail(path, "smoke", f"code does not parse: {exc}") from None

    return Recipe(
        name=canonicalize_name(name),
        version=version,
        source=source,
        smoke=Smoke(imports=imports, code=code, load=load,
                    requires=_requirements(smoke, "requires", path, "smoke", pinned=False)),
        directory=path.parent,
        requires=_requirements(build, "requires", path, "build", pinned=True),
        env=tuple(sorted(env.items())),
        patches=tuple(patches),
        target_libs=_strs(build, "target-libs", path, "build"),
        targets=targets,
        python=python,
        backend=backend,
        target_requires=_target_requirements(build, path),
        config_settings=config_settings,
        summary=pkg.get("summary", ""),
        raw=data,
    )


def load_recipe(path: Path, known_targets: set[str] | None = None) -> Recipe:
    if path.is_dir():
        path = path / "recipe.toml"
    return parse_recipe(read_toml(path), path, known_targets)


def load_all(packages_dir: Path, known_targets: set[str] | None = None) -> dict[str, Recipe]:
    """Every buildable packages/*/recipe.toml, by canonical name (closure recipes are skipped:
    see load_closures). One bad recipe stops the load (see load_each for the lenient load)."""
    return load_each(packages_dir, known_targets).strict().recipes


# -- closure recipes ------------------------------------------------------------------------

@dataclass(frozen=True)
class ClosureRecipe:
    """`[closure] requirement = "prefect==3.3.4"`: plan it, build what it lacks, rehearse the install."""

    name: str
    version: str
    requirement: str
    directory: Path
    constraints: Path | None = None  # NAME==VERSION pins (relative to the recipe folder in the file)
    cutoff: str = ""  # ISO date: resolve as of then when the constraints do not fit a target
    code: str = ""  # the rehearsal program run on the target after the install (default: import it)
    targets: tuple[str, ...] = ()  # empty: every target
    summary: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def path(self) -> Path:
        return self.directory / "recipe.toml"


def parse_closure(data: dict[str, Any], path: Path, known_targets: set[str] | None = None) -> ClosureRecipe:
    unknown = set(data) - {"package", "closure"}
    if unknown:
        raise _fail(path, "", f"a [closure] recipe has only [package] and [closure]; remove {sorted(unknown)}")
    pkg = _table(data, "package", path)
    clo = _table(data, "closure", path)
    name = _str(pkg, "name", path, "package")
    if canonicalize_name(name) != canonicalize_name(path.parent.name):
        raise _fail(path, "package", f"name {name!r} does not match its folder {path.parent.name!r}")
    version = _str(pkg, "version", path, "package")
    requirement = _str(clo, "requirement", path, "closure")
    try:
        req = Requirement(requirement)
    except InvalidRequirement as exc:
        raise _fail(path, "closure", f"requirement {requirement!r} is not valid: {exc}") from None
    if canonicalize_name(req.name) != canonicalize_name(name) or not req.specifier.contains(version):
        raise _fail(path, "closure", f"requirement {requirement!r} does not name {name} {version}")
    constraints = None
    if "constraints" in clo:
        constraints = (path.parent / _str(clo, "constraints", path, "closure")).resolve()
        if not constraints.is_relative_to(path.parent.resolve()) or not constraints.is_file():
            raise _fail(path, "closure", f"constraints: {clo['constraints']!r} is not a file inside {path.parent}")
    cutoff = _str(clo, "cutoff", path, "closure", default="") if "cutoff" in clo else ""
    code = clo.get("code", "")
    if not isinstance(code, str):
        raise _fail(path, "closure", "code must be a string of Python")
    try:
        compile(code, f"{path}:[closure].code", "exec")
    except SyntaxError as exc:
        raise _fail(path, "closure", f"code does not parse: {exc}") from None
    targets = _strs(clo, "targets", path, "closure")
    if known_targets is not None:
        for t in targets:
            if t not in known_targets:
                raise _fail(path, "closure", f"targets: unknown target {t!r}; known: {sorted(known_targets)}")
    return ClosureRecipe(name=canonicalize_name(name), version=version, requirement=str(req),
                         directory=path.parent, constraints=constraints, cutoff=cutoff, code=code,
                         targets=targets, summary=pkg.get("summary", ""), raw=data)


def load_closure(path: Path, known_targets: set[str] | None = None) -> ClosureRecipe:
    if path.is_dir():
        path = path / "recipe.toml"
    return parse_closure(read_toml(path), path, known_targets)


def load_closures(packages_dir: Path, known_targets: set[str] | None = None) -> dict[str, ClosureRecipe]:
    """Every packages/*/recipe.toml that holds a [closure] table, by canonical name."""
    return load_each(packages_dir, known_targets).strict().closures


@dataclass(frozen=True)
class RecipeSet:
    """packages/*/recipe.toml loaded one by one: the good ones, and the error of each bad one."""

    recipes: dict[str, Recipe]
    closures: dict[str, ClosureRecipe]
    errors: dict[str, str]  # recipe folder name -> why its recipe.toml does not load

    def strict(self) -> RecipeSet:
        """This set, or ConfigError with the first bad recipe's message."""
        for message in self.errors.values():
            raise ConfigError(message)
        return self


def load_each(packages_dir: Path, known_targets: set[str] | None = None) -> RecipeSet:
    """Every packages/*/recipe.toml on its own: one bad recipe does not hide the others."""
    recipes: dict[str, Recipe] = {}
    closures: dict[str, ClosureRecipe] = {}
    errors: dict[str, str] = {}
    for p in sorted(packages_dir.glob("*/recipe.toml")):
        try:
            data = read_toml(p)
            if "closure" in data:
                c = parse_closure(data, p, known_targets)
                closures[c.name] = c
            else:
                r = parse_recipe(data, p, known_targets)
                recipes[r.name] = r
        except ConfigError as exc:
            errors[p.parent.name] = str(exc)
    return RecipeSet(recipes, closures, errors)
