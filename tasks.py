"""Invoke tasks: thin wrappers that parse arguments, call the library, and turn errors into exit codes."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Collection, task
from invoke.exceptions import Exit

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from ot2wheels.errors import Ot2WheelsError  # noqa: E402
from ot2wheels.paths import Layout  # noqa: E402

ns = Collection()


def _fail(exc: Ot2WheelsError) -> Exit:
    return Exit(f"error: {exc}", code=1)


# --- plan ---
@task(help={
    "requirement": "what to install on the target, e.g. 'prefect==3.3.4'",
    "target": "target name from toolchain/targets.toml (or the built-in 'ot2')",
    "constraints": "NAME==VERSION pins to resolve against (reproducible plans)",
    "cutoff": "ignore files uploaded after this ISO date (reproducible without constraints)",
    "json": "write the plan as JSON here (default: dist/plan/<target>/plan.json)",
    "out_constraints": "write the closure's pins here (default: dist/plan/<target>/constraints.txt)",
    "write_recipes": "write packages/NAME/recipe.toml for every must-build package lacking one",
})
def plan(c, requirement, target, constraints=None, cutoff=None, json=None, out_constraints=None,
         write_recipes=False):
    """Resolve a requirement's closure for a target and show what must be built."""
    from ot2wheels import plan as planner

    try:
        layout = Layout.discover()
        tgt = planner.find_target(target, layout.targets_file)
        p = planner.plan(requirement, tgt, Path(constraints) if constraints else None, cutoff,
                         cache_dir=layout.cache)
        planner.render(p)
        out = layout.dist / "plan" / tgt.name
        json_path = Path(json) if json else out / "plan.json"
        cons_path = Path(out_constraints) if out_constraints else out / "constraints.txt"
        planner.write_json(p, json_path)
        planner.write_constraints(p, cons_path)
        print(f"wrote {json_path} and {cons_path}")
        if write_recipes:
            from ot2wheels.recipe_new import write_missing_recipes

            for path in write_missing_recipes(p, layout):
                print(f"wrote {path}")
    except Ot2WheelsError as exc:
        raise _fail(exc) from None


@task(name="new", help={"spec": "NAME==VERSION of the sdist to make a recipe for",
                        "force": "overwrite an existing recipe"})
def recipe_new(c, spec, force=False):
    """Write packages/NAME/recipe.toml from the sdist on the index (pinned, editable)."""
    from ot2wheels.recipe_new import new_recipe

    try:
        path = new_recipe(spec, Layout.discover(), force=force)
        print(f"wrote {path}")
    except Ot2WheelsError as exc:
        raise _fail(exc) from None


ns.add_task(plan)
recipe_ns = Collection("recipe")
recipe_ns.add_task(recipe_new)
ns.add_collection(recipe_ns)
# --- end plan ---
