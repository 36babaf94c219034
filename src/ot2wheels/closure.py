"""A closure recipe end to end: plan it per target, build what it lacks, rehearse the install.

    plan (ot2wheels.plan) -> must-build list -> recipes -> build + smoke (pipeline) -> rehearse
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from . import pipeline
from .errors import ConfigError, PlanError
from .options import RunOptions
from .pipeline import Project
from .plan import BUILD, Plan, plan, write_constraints, write_json
from .pypi import IndexClient
from .recipes import ClosureRecipe
from .records import write_atomic
from .rehearse import RehearsalResult, rehearse
from .targets import Target
from .toolchains import get_toolchain

Say = Callable[[str], None]


@dataclass
class ClosureRun:
    closure: ClosureRecipe
    target: Target
    plan: Plan | None = None
    failures: list[str] = field(default_factory=list)
    rehearsal: RehearsalResult | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and self.rehearsal is not None and self.rehearsal.passed


def get_closure(project: Project, name: str) -> ClosureRecipe:
    if name in project.broken:
        raise ConfigError(project.broken[name])
    closures = project.closures
    try:
        return closures[name]
    except KeyError:
        raise ConfigError(f"no closure recipe {name!r} in {project.layout.packages} "
                          f"(a recipe.toml with a [closure] table); known: {', '.join(sorted(closures)) or 'none'}") from None


def plan_closure(closure: ClosureRecipe, target: Target, client: IndexClient, say: Say = print) -> Plan:
    """The closure's plan for `target`: its constraints (when they fit the target) and its cut-off."""
    cutoff = closure.cutoff or None
    try:
        return plan(closure.requirement, target, constraints=closure.constraints, cutoff=cutoff, client=client)
    except PlanError as exc:
        if not (closure.constraints and cutoff and "constraints" in str(exc)):
            raise
        say(f"[{target.name}] {exc}; resolving as of {cutoff} without them")
        return plan(closure.requirement, target, cutoff=cutoff, client=client)


def run_closure(project: Project, closure: ClosureRecipe, targets: list[Target], options: RunOptions | None = None,
                *, say: Say = print, command: str | None = None,
                client: IndexClient | None = None) -> list[ClosureRun]:
    """Plan, build the must-build wheels and smoke-test them (`pipeline.run`: reusing cached
    builds, one ledger run per target), rehearse the install."""
    options = (options or RunOptions()).replace(build=True, smoke=True)
    client = client or IndexClient(project.layout.cache)
    runs = []
    for target in targets:
        run = ClosureRun(closure, target)
        runs.append(run)
        if closure.targets and target.name not in closure.targets:
            continue
        run.plan = p = plan_closure(closure, target, client, say)
        out = project.layout.plan_dir(target.name)
        write_json(p, out / f"{closure.name}.json")
        write_constraints(p, out / f"{closure.name}-constraints.txt")
        must = [e.name for e in p.must_build]
        say(f"[{target.name}] {closure.requirement}: {len(p.entries)} distributions, must build: "
            f"{', '.join(must) or 'nothing'}")
        missing = [n for n in must if n not in project.recipes]
        if missing:
            say(f"[{target.name}] no recipe for {', '.join(missing)}: left unpinned, so pip must find a wheel "
                f"elsewhere (a newer release may ship one); `invoke plan \"{closure.requirement}\" --target "
                f"{target.name}{f' --cutoff {closure.cutoff}' if closure.cutoff else ''} --write-recipes` "
                "writes recipes to start from")
        pairs = [(project.recipes[n], target) for n in must if n in project.recipes]
        for recipe, _t in pairs:
            pinned = p.get(recipe.name).version
            if pinned != recipe.version:
                say(f"[{target.name}] note: the plan pins {recipe.name}=={pinned}; our recipe builds {recipe.version}")
        summary = pipeline.run(project, pipeline.Selection(tuple(pairs)), options, say=say,
                               command=f"{command or f'closure {closure.name}'} [{target.name}]")
        run.failures += summary.failures
        if run.failures:
            continue
        wheels = [b.wheel for b in summary.builds if b.wheel is not None]
        toolchain = get_toolchain(target, project.layout)
        toolchain.ensure()
        # pin what the plan resolved, except the must-build distributions: rehearse() pins those
        # we built to our wheels' versions; for those without a recipe pip finds what wheel it can
        pins = out / f"{closure.name}-rehearsal-constraints.txt"
        write_atomic(pins, "".join(f"{e.name}=={e.version}\n" for e in p.entries if e.bucket != BUILD))
        run.rehearsal = rehearse(closure.requirement, toolchain, wheels, client, project.layout.cache,
                                 code=closure.code, constraints=pins, say=say)
        say(run.rehearsal.summary())
        # what pip installed and which of it was ours, for the user (and tests) to read back
        write_atomic(out / f"{closure.name}-rehearsal.json", json.dumps(run.rehearsal.to_dict(), indent=2) + "\n")
        if not run.rehearsal.passed:
            run.failures.append(f"rehearsal on {target.name}:\n{run.rehearsal.output[-3000:]}")
    return runs
