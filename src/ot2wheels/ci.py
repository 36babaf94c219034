"""CI planning: which (recipe, target, Python) cells to build, as a GitHub Actions matrix."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError
from .recipes import Recipe, build_matrix, load_all
from .targets import TargetSet

# A change to one of these files can change every wheel: all recipes are rebuilt.
REBUILD_ALL = ("toolchain/targets.toml",)


@dataclass(frozen=True)
class Cell:
    recipe: str
    version: str
    target: str
    python: str
    build_session: str  # the nox session that builds this cell

    @classmethod
    def of(cls, recipe: Recipe, target_name: str, python: str) -> Cell:
        return cls(recipe=recipe.name, version=recipe.version, target=target_name, python=python,
                   build_session=f"build-{recipe.name}-{python}")


def cells(recipes: dict[str, Recipe], targets: TargetSet, target_names: list[str] | None = None,
          only: set[str] | None = None) -> list[Cell]:
    """Every (recipe, target) a recipe supports, sorted; `only` limits to these recipe names."""
    chosen = [recipes[name] for name in sorted(recipes) if only is None or name in only]
    return [Cell.of(r, t.name, t.python) for r, t in build_matrix(chosen, targets.select(target_names))]


def matrix(cell_list: list[Cell]) -> dict[str, list[dict[str, str]]]:
    """The `strategy.matrix` value: {"include": [...]} (empty include: nothing to build)."""
    return {"include": [asdict(c) for c in cell_list]}


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ConfigError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}; "
                          "pass a ref that exists (fetch it first, e.g. with fetch-depth: 0 in CI)")
    return proc.stdout


def changed_recipes(root: Path, recipes: dict[str, Recipe], since: str) -> set[str]:
    """Names of recipes whose folder changed since `since` (its merge base with HEAD, up to the
    work tree, uncommitted changes included). A change in REBUILD_ALL selects every recipe."""
    base = _git(root, "merge-base", since, "HEAD").strip()
    changed = set(_git(root, "diff", "--name-only", "--no-renames", base, "--").split("\n"))
    changed |= set(_git(root, "ls-files", "--others", "--exclude-standard", "--", "packages").split("\n"))
    changed.discard("")
    if changed & set(REBUILD_ALL):
        return set(recipes)
    by_folder = {r.directory.resolve().relative_to(root.resolve()).as_posix(): r.name for r in recipes.values()}
    out = set()
    for path in changed:
        for folder, name in by_folder.items():
            if path.startswith(folder + "/"):
                out.add(name)
    return out


def plan(root: Path, packages_dir: Path, targets: TargetSet, since: str | None = None,
         target_names: list[str] | None = None) -> list[Cell]:
    recipes = load_all(packages_dir, known_targets=set(targets.targets)) if packages_dir.is_dir() else {}
    only = changed_recipes(root, recipes, since) if since else None
    return cells(recipes, targets, target_names, only)
