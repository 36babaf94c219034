"""Invoke tasks: toolchains, SDK, Docker images, the index, the CI matrix. Thin by design.

    invoke toolchain.setup --target bookworm-armhf
    invoke toolchain.info
    invoke report                     status page from the build ledger -> index/report/
    invoke bench                      cross vs emulated vs native, warm vs cold (bench/run.py)
"""

from __future__ import annotations

import sys
from functools import wraps
from pathlib import Path

from invoke import Collection, Exit, task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # run from this checkout whether installed or not

from ot2wheels import options  # noqa: E402
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
        print(f"{t.name}: sysroot {tc.sysroot}\n  digest {tc.digest}\n  build python {tc.build_python_info().describe()}")


@task(iterable=["target"])
@friendly
def toolchain_info(c, target=None):
    """Show each target's settings and its build Python (which one, where it came from)."""
    from ot2wheels.pipeline import Project
    from ot2wheels.toolchains import get_toolchain

    project = Project.load()
    for t in project.targets.select(target or list(project.targets.targets)):
        python = (get_toolchain(t, project.layout).build_python_status() if t.buildable
                  else "none: a planning target (`invoke plan --target " + t.name + "`)")
        print(f"{t.name}: CPython {t.python} ({t.cp}), {t.architecture.debian} {t.platform}, glibc {t.glibc_str}, "
              f"{t.triplet}, provider {t.provider}\n  {t.description}\n"
              f"  build python: {python}")


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
    from ot2wheels.progress import status
    from ot2wheels.recipes import load_all
    from ot2wheels.targets import load_targets

    layout = Layout.discover(ROOT)
    tgt = load_targets(layout.targets_file).get(target)
    with status("invoke plan") as step:  # a live line with the elapsed time while resolving
        step(f"resolving {requirement} for {tgt.name}")
        p = planner.plan(requirement, tgt, Path(constraints) if constraints else None, cutoff,
                         cache_dir=layout.cache)
        step(f"resolved {requirement} for {tgt.name}")
    p = p.with_recipes({n: r.version for n, r in load_all(layout.packages).items()})
    planner.render(p)
    from ot2wheels.targetdeps import device_notes

    for line in device_notes([(e.name, e.version) for e in p.entries], tgt):
        print(line)
    out = layout.plan_dir(tgt.name)
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
            "python": "target Python X.Y versions to pin the build requirements for, comma-separated "
                      "(default: those of every target)",
            "no_hooks": "do not ask the backend's get_requires_for_build_wheel (no build env is made)",
            "no_contents": "map headers with the hand map only (no Debian Contents index download)"})
@friendly
def recipe_new(c, spec, force=False, python=None, no_hooks=False, no_contents=False):
    """Write packages/NAME/recipe.toml from the sdist on the index (pinned, editable)."""
    from ot2wheels.paths import Layout
    from ot2wheels.recipe_new import new_recipe

    pythons = [p.strip() for p in python.split(",")] if python else None
    layout = Layout.discover(ROOT)
    headers = None
    if not no_contents:
        from ot2wheels.debcontents import header_map
        from ot2wheels.targets import load_targets

        headers = header_map(load_targets(layout.targets_file).select(None)[0], layout.cache)
    print(f"wrote {new_recipe(spec, layout, force=force, pythons=pythons, headers=headers, hooks=not no_hooks)}")


@task(help={"name": "the recipe in packages/ to refine",
            "wheel": "the built wheel to read (default: the newest passed one in dist/ for any target)"})
@friendly
def recipe_refine(c, name, wheel=None):
    """Replace a recipe's guessed [smoke] imports with what its built wheel ships."""
    from ot2wheels.paths import Layout
    from ot2wheels.recipe_new import built_wheel, refine_smoke_imports

    layout = Layout.discover(ROOT)
    path = layout.packages / name / "recipe.toml"
    whl = Path(wheel) if wheel else built_wheel(layout, name)
    found = refine_smoke_imports(path, whl)
    print(f"{path}: [smoke] imports = {list(found.imports)}, load = {list(found.load)} (from {whl.name})")


ns.add_task(plan)
recipe = Collection("recipe")
recipe.add_task(recipe_new, "new")
recipe.add_task(recipe_refine, "refine")
ns.add_collection(recipe)
# --- end plan ----------------------------------------------------------------------------


# --- build -------------------------------------------------------------------------------
# the options and their help come from ot2wheels.options.RunOptions (shared with the nox sessions);
# invoke needs them as parameters too, and refuses help for a parameter the signature lacks
@task(iterable=["recipe", *options.invoke_iterable()],
      help={"recipe": "recipe name (repeatable; default: all)", **options.invoke_help()})
@friendly
def build(c, recipe=None, target=None, force=False, jobs=None, ccache=True, ledger=None, smoke=False, docker=False):
    """Cross-build recipes (the same as `nox -s build`), on this machine or in the builder image."""
    from ot2wheels import pipeline

    opts = options.from_args(locals())
    if opts.docker:
        from ot2wheels import docker_images
        from ot2wheels.paths import Layout

        argv = ["invoke", "build", *[f"--recipe={r}" for r in recipe or []], *options.to_argv(opts.replace(docker=False))]
        code, _ = docker_images.run_in_image(Layout.discover(), argv)
        if code:
            raise Exit(f"error: the build exited with {code} in the container", code=code)
        return
    project = pipeline.Project.load()
    from ot2wheels.progress import status

    command = "invoke build " + " ".join([*[f"--recipe={r}" for r in recipe or []], *options.to_argv(opts)])
    with status("invoke build") as step:  # the newest step and the elapsed time stay in view
        summary = pipeline.run(project, pipeline.select(project, recipe or None, opts.target), opts, say=step,
                               command=command.strip())
    if summary.failures:
        raise Exit("failed:\n  " + "\n  ".join(summary.failures), code=1)


ns.add_task(build)


# --- sdk ---------------------------------------------------------------------------------
@task(help={
    "url": "download the SDK tarball from here instead of the pinned URL (a mirror)",
    "file": "use this SDK tarball you already have instead of downloading",
    "sha256": "expected sha256 of the tarball (overrides the pin in toolchain/sdk.toml)",
    "size": "expected size in bytes (optional)",
    "name": "which [sdk.NAME] of toolchain/sdk.toml (default: ot2)",
    "no_progress": "no progress bar",
})
@friendly
def sdk_pull(c, url=None, file=None, sha256=None, size=None, name="ot2", no_progress=False):
    """Download, verify, unpack, relocate and install the Buildroot SDK into the cache."""
    from ot2wheels import sdk
    from ot2wheels.paths import Layout

    sdk.pull(Layout.discover(), name=name, url=url, file=Path(file) if file else None,
             sha256=sha256, size=int(size) if size else None, progress=not no_progress)


@task(help={"name": "which [sdk.NAME] of toolchain/sdk.toml (default: ot2)"})
@friendly
def sdk_info(c, name="ot2"):
    """What SDK is installed, where, and whether it matches the pin."""
    from ot2wheels import sdk
    from ot2wheels.paths import Layout

    print("\n".join(sdk.info(Layout.discover(), name=name).lines()))


sdk_tasks = Collection("sdk")
sdk_tasks.add_task(sdk_pull, "pull")
sdk_tasks.add_task(sdk_info, "info")
ns.add_collection(sdk_tasks)
# --- end sdk -----------------------------------------------------------------------------


# --- docker ------------------------------------------------------------------------------
@task(help={"force": "rebuild even when an image with the same input digest exists",
            "mirror": "Debian mirror for the base rootfs (default: the one the host's apt uses)"})
@friendly
def docker_build(c, force=False, mirror=None):
    """Build the builder image (toolchain + ot2wheels), tagged by a digest of its inputs."""
    from ot2wheels import docker_images
    from ot2wheels.paths import Layout

    result = docker_images.build_image(Layout.discover(), base=docker_images.default_base(mirror),
                                       force=force)
    print(f"{result.tag} ({'built' if result.built else 'already up to date'}; base {result.base_tag})")


@task(help={"registry": "registry host[:port][/path] to push to", "tag": "local image (default: ot2wheels-builder:latest)"})
@friendly
def docker_push(c, registry, tag=None):
    """Push the builder image to a registry (docker login first)."""
    from ot2wheels import docker_images

    print(docker_images.push_image(registry, tag))


@task(help={"ref": "REGISTRY/ot2wheels-builder:TAG to pull"})
@friendly
def docker_pull(c, ref):
    """Pull a builder image from a registry and tag it locally."""
    from ot2wheels import docker_images

    print(docker_images.pull_image(ref))


@task(help={"command": "the command to run in the image, e.g. \"nox -s build-markupsafe\"",
            "image": "image to use (default: build/reuse the one for this checkout)",
            "user": "uid:gid to run as (default: yours, so outputs belong to you)"})
@friendly
def docker_run(c, command, image=None, user=None):
    """Run a command (a build) inside the builder image, checkout and cache bind-mounted."""
    import shlex

    from ot2wheels import docker_images
    from ot2wheels.paths import Layout

    code, _ = docker_images.run_in_image(Layout.discover(), shlex.split(command), image=image, user=user)
    if code:
        raise Exit(f"error: `{command}` exited with {code} in the container", code=code)


docker_tasks = Collection("docker")
docker_tasks.add_task(docker_build, "build")
docker_tasks.add_task(docker_push, "push")
docker_tasks.add_task(docker_pull, "pull")
docker_tasks.add_task(docker_run, "run")
ns.add_collection(docker_tasks)
# --- end docker --------------------------------------------------------------------------
# --- index ---------------------------------------------------------------------------------------
def _index_paths(root: str | None, dist: str | None, index: str | None, yanked: str | None):
    from ot2wheels.paths import Layout

    layout = Layout.discover(Path(root) if root else None, dist=Path(dist) if dist else None)
    index_dir = Path(index) if index else layout.index
    yanked_file = Path(yanked) if yanked else layout.yanked_file
    return layout, index_dir, yanked_file


@task(name="build", help={
    "base_url": "write absolute links under this URL (default: relative links)",
    "dist": "wheels to publish (default: dist/)",
    "index": "index directory (default: index/)",
    "yanked": "yank list (default: toolchain/yanked.toml)",
    "full": "recompute every page and swap the whole tree (default: publish only what changed)",
})
@friendly
def index_build(c, base_url=None, dist=None, index=None, yanked=None, root=None, full=False):
    """Regenerate index/ from dist/ and what index/ already publishes (atomic, incremental)."""
    from ot2wheels.index.cli import publish

    layout, index_dir, yanked_file = _index_paths(root, dist, index, yanked)
    publish(str(layout.dist), str(index_dir), str(layout.targets_file), str(yanked_file), base_url, full)


@task(name="remove", iterable=["wheel"], help={
    "wheel": "<target>/<wheel filename> to unpublish (repeatable); prefer yanking",
})
@friendly
def index_remove(c, wheel, base_url=None, dist=None, index=None, yanked=None, root=None):
    """Take published wheels out of the index on purpose (refused while still in dist/)."""
    from ot2wheels.index import remove_wheels
    from ot2wheels.index.cli import print_result
    from ot2wheels.targets import load_targets

    pairs = []
    for item in wheel:
        target, _, filename = item.partition("/")
        if not filename:
            raise Exit(f"error: --wheel {item!r} must look like <target>/<wheel filename>", code=2)
        pairs.append((target, filename))
    layout, index_dir, yanked_file = _index_paths(root, dist, index, yanked)
    result = remove_wheels(layout.dist, index_dir, yanked_file, pairs, base_url,
                           targets=load_targets(layout.targets_file))
    print_result(result)


@task(name="serve", help={"port": "TCP port on 127.0.0.1 (default 8000; 0 picks a free one)"})
def index_serve(c, port=8000, index=None, root=None, verbose=False):
    """Serve index/ on 127.0.0.1 (PEP 691 content negotiation) until interrupted."""
    from ot2wheels.index.serve import make_server

    _, index_dir, _ = _index_paths(root, None, index, None)
    if not (index_dir / "index.html").is_file():
        raise Exit(f"error: {index_dir} holds no index yet; run `invoke index.build` first", code=1)
    server = make_server(index_dir, "127.0.0.1", int(port), quiet=not verbose)
    print(f"serving {index_dir} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


ns.add_collection(Collection("index", index_build, index_serve, index_remove))
# --- end index -----------------------------------------------------------------------------------


# --- ci ------------------------------------------------------------------------------------------
@task(name="matrix", iterable=["target"], help={
    "since": "only recipes whose files changed since this git ref (merge base with HEAD)",
    "target": "target name (repeatable; default: the default targets of toolchain/targets.toml)",
    "pretty": "indent the JSON",
})
@friendly
def ci_matrix(c, since=None, target=None, pretty=False, root=None):
    """Print the GitHub Actions build matrix (recipe x target x Python) as JSON."""
    import json

    from ot2wheels.ci import matrix, plan
    from ot2wheels.paths import Layout
    from ot2wheels.targets import load_targets

    layout = Layout.discover(Path(root) if root else None)
    cells = plan(layout.root, layout.packages, load_targets(layout.targets_file), since, target or None)
    print(json.dumps(matrix(cells), indent=2 if pretty else None, sort_keys=True))


ns.add_collection(Collection("ci", ci_matrix))
# --- end ci --------------------------------------------------------------------------------------


# --- report ------------------------------------------------------------------------------
@task(help={"ledger": "SQLite ledger (default: $OT2WHEELS_LEDGER or dist/ledger.sqlite)",
            "out": "output directory (default: index/report)",
            "factor": "robot native build time / cross build time (default: bench/results.json, else 10)"})
@friendly
def report(c, ledger=None, out=None, factor=None):
    """Render the build status page (HTML + JSON) from the ledger into index/report/."""
    from ot2wheels import ledger as ledger_mod
    from ot2wheels import report as report_mod
    from ot2wheels.index import swap
    from ot2wheels.paths import Layout

    layout = Layout.discover()
    led = ledger_mod.Ledger(Path(ledger) if ledger else ledger_mod.default_path(layout))
    with swap.locked(layout.index.absolute()):  # never while `invoke index.build` swaps index/
        rep = report_mod.build_report(led, Path(out) if out else layout.index / "report", layout.root,
                                      float(factor) if factor else None)
    t = rep.data["totals"]
    print(f"{rep.out_dir / 'index.html'}: {t['cells']} package x target cells "
          f"({t['passed']} passed, {t['reused']} reused, {t['failed']} failed); also report.json")
    print(f"robot build time saved per install of all: {rep.data['time_saved']['robot_build_s_per_install_of_all']:.0f} s "
          f"(K = {rep.data['time_saved']['factor']:g})")


# --- survey ------------------------------------------------------------------------------
@task(iterable=["project", "target"], help={
    "project": "project name (repeatable; default: the list's projects)",
    "target": "target name (repeatable; default: the default targets)",
    "limit": "only the first N projects of the list (after --skip)",
    "skip": "skip projects with these parts, comma-separated (default: rust,fortran; '' for none)",
    "jobs": "builds at once (default 1)",
    "projects_file": "the project list (default: toolchain/survey-projects.toml)",
    "promote": "copy this project's generated recipe into packages/ (it must have passed on every default target)",
    "force": "with --promote: replace an existing packages/NAME/recipe.toml",
    "build_timeout": "minutes one build's compile may take before it is stopped (class `timeout`; default 30, 0: none)",
    "resume": "skip project x target cells the coverage.json already has (go on after an interrupted run)",
})
@friendly
def survey(c, project=None, target=None, limit=None, skip="rust,fortran", jobs=1, projects_file=None,
           promote=None, force=False, build_timeout=30, resume=False):
    """Generate recipes into build/survey/, build + smoke-test them, write index/coverage/."""
    from ot2wheels import survey as sv
    from ot2wheels.paths import Layout

    layout = Layout.discover(ROOT)
    out = layout.index / "coverage"
    if promote:
        print(f"promoted: {sv.promote(layout, promote, out / 'coverage.json', force=force)}")
        return
    plist = sv.load_project_list(Path(projects_file) if projects_file else layout.root / "toolchain" / "survey-projects.toml")
    chosen = plist.select(project or None, tuple(p for p in skip.split(",") if p), int(limit) if limit else None)
    timeout_s = float(build_timeout) * 60 or None
    done = sv.done_cells(out / "coverage.json", target or None) if resume else frozenset()
    # the page is rewritten after every project (merged with the cells of earlier runs)
    cells = sv.run_survey(layout, chosen, target or None, jobs=int(jobs), build_timeout_s=timeout_s,
                          skip_cells=done, progress=lambda so_far: sv.write_page(so_far, chosen, plist, out))
    data = sv.write_page(cells, chosen, plist, out)
    for t, s in data["summary"].items():
        print(f"{t}: {s['projects']} projects, {s['built']} built, {s['smoke_passed']} smoke-passed; "
              f"failures: {', '.join(f'{k} {v}' for k, v in s['by_class'].items() if v) or 'none'}")
    print(f"wrote {out / 'index.html'} and coverage.json")


ns.add_task(survey)


@task(name="merge", iterable=["source"], help={
    "source": "a ledger to merge in (repeat; e.g. one per CI matrix job)",
    "out": "the merged ledger (default: $OT2WHEELS_LEDGER or dist/ledger.sqlite; its rows are kept)"})
@friendly
def ledger_merge(c, source, out=None):
    """Merge ledgers into one, newest rows last, duplicates once (CI: one ledger per matrix job)."""
    from ot2wheels import ledger as ledger_mod
    from ot2wheels.paths import Layout

    layout = Layout.discover()
    dest = Path(out) if out else ledger_mod.default_path(layout)
    builds, smokes = ledger_mod.merge([Path(s) for s in source], dest, dist=layout.dist)
    print(f"{dest}: {builds} builds and {smokes} smoke tests from {len(source)} ledger(s)")


ns.add_collection(Collection("ledger", ledger_merge))


# --- bench -------------------------------------------------------------------------------
@task(help={"all": "every recipe (default: markupsafe and msgpack)", "skip": "parts to skip: a,b,c,d"})
def bench(c, all=False, skip=""):
    """Benchmarks: cross vs emulated vs native builds, warm vs cold cache, smoke cold vs warm."""
    args = [sys.executable, str(ROOT / "bench" / "run.py")] + (["--all"] if all else []) + (
        ["--skip", skip] if skip else [])
    c.run(" ".join(args), pty=False)


ns.add_task(report)
ns.add_task(bench)
# --- end report / bench ---------------------------------------------------------------------
