"""Invoke tasks: toolchains, SDK, Docker images, the index, the CI matrix. Thin by design.

    invoke toolchain.setup --target bookworm-armhf
    invoke toolchain.info
"""

from __future__ import annotations

import sys
from functools import wraps
from pathlib import Path

from invoke import Collection, Exit, task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # run from this checkout whether installed or not

from ot2wheels.errors import Ot2WheelsError  # noqa: E402


def friendly(fn):
    """Turn our errors into a one-message exit 1 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Ot2WheelsError as exc:
            raise Exit(f"error: {exc}", code=1) from None

    return wrapper


# --- toolchain ---------------------------------------------------------------------------
@task(iterable=["target"], help={"target": "target name (repeatable; default: the default targets)",
                                 "refresh": "re-read the suite's package lists first"})
@friendly
def toolchain_setup(c, target=None, refresh=False):
    """Install host tools and assemble the target sysroot(s), cached and verified."""
    from ot2wheels.pipeline import Project
    from ot2wheels.toolchains import get_toolchain

    project = Project.load()
    for t in project.targets.select(target or None):
        tc = get_toolchain(t, project.layout)
        tc.ensure(refresh=refresh)
        print(f"{t.name}: sysroot {tc.sysroot}\n  digest {tc.digest}\n  build python {tc.build_python()}")


@task(iterable=["target"])
@friendly
def toolchain_info(c, target=None):
    """Show each target's settings and whether its toolchain is ready."""
    from ot2wheels.pipeline import Project

    project = Project.load()
    for t in project.targets.select(target or list(project.targets.targets)):
        print(f"{t.name}: CPython {t.python} ({t.cp}), {t.platform}, glibc {t.glibc_str}, "
              f"{t.triplet}, provider {t.provider}\n  {t.description}")


toolchain = Collection("toolchain")
toolchain.add_task(toolchain_setup, "setup")
toolchain.add_task(toolchain_info, "info")

ns = Collection()
ns.add_collection(toolchain)


# --- plan --------------------------------------------------------------------------------
@task(help={
    "requirement": "what to install on the target, e.g. 'prefect==3.3.4'",
    "target": "target name from toolchain/targets.toml (or the built-in 'ot2')",
    "constraints": "NAME==VERSION pins to resolve against (reproducible plans)",
    "cutoff": "ignore files uploaded after this ISO date (reproducible without constraints)",
    "json": "write the plan as JSON here (default: build/plan/<target>/plan.json)",
    "out_constraints": "write the closure's pins here (default: build/plan/<target>/constraints.txt)",
    "write_recipes": "write packages/NAME/recipe.toml for every must-build package lacking one",
})
@friendly
def plan(c, requirement, target, constraints=None, cutoff=None, json=None, out_constraints=None,
         write_recipes=False):
    """Resolve a requirement's closure for a target and show what must be built."""
    from ot2wheels import plan as planner
    from ot2wheels.paths import Layout

    layout = Layout.discover(ROOT)
    tgt = planner.find_target(target, layout.targets_file)
    p = planner.plan(requirement, tgt, Path(constraints) if constraints else None, cutoff, cache_dir=layout.cache)
    planner.render(p)
    out = layout.root / "build" / "plan" / tgt.name
    json_path = Path(json) if json else out / "plan.json"
    cons_path = Path(out_constraints) if out_constraints else out / "constraints.txt"
    planner.write_json(p, json_path)
    planner.write_constraints(p, cons_path)
    print(f"wrote {json_path} and {cons_path}")
    if write_recipes:
        from ot2wheels.recipe_new import write_missing_recipes

        for path in write_missing_recipes(p, layout):
            print(f"wrote {path}")


@task(help={"spec": "NAME==VERSION of the sdist to make a recipe for",
            "force": "overwrite an existing recipe",
            "python": "target Python X.Y to pin the build requirements for (default 3.11)"})
@friendly
def recipe_new(c, spec, force=False, python="3.11"):
    """Write packages/NAME/recipe.toml from the sdist on the index (pinned, editable)."""
    from ot2wheels.paths import Layout
    from ot2wheels.recipe_new import new_recipe

    print(f"wrote {new_recipe(spec, Layout.discover(ROOT), force=force, python=python)}")


ns.add_task(plan)
recipe = Collection("recipe")
recipe.add_task(recipe_new, "new")
ns.add_collection(recipe)
# --- end plan ----------------------------------------------------------------------------
