"""`invoke survey`: generated recipes for many projects, built and smoke-tested, as a coverage page.

For every project of a list it writes a recipe with `recipe.new` (newest release with an sdist)
into a scratch checkout (build/survey/: never packages/), builds it for each target with the
normal pipeline (cache, ledger in build/survey/dist/, one log per build), replaces the guessed
smoke imports with what the built wheel ships, smoke-tests it, and writes index/coverage/
(index.html + coverage.json): project x target -> the stage reached, the error line and a
failure class. `promote` copies a recipe that passed on every default target into packages/.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from packaging.utils import canonicalize_name
from packaging.version import Version

from .errors import ConfigError, Ot2WheelsError
from .fsutil import atomic_copy, atomic_write
from .paths import Layout
from .tomlfile import read_toml

if TYPE_CHECKING:
    from .recipes import Recipe
    from .targets import Target

Say = Callable[[str], None]
PARTS = ("c", "c++", "cython", "mypyc", "rust", "fortran")


class Stage(StrEnum):
    UNSUPPORTED = "unsupported"  # the newest release's Requires-Python excludes the target's CPython
    RECIPE = "recipe"  # recipe.new failed
    BUILD = "build"  # the build or the gate failed
    SMOKE = "smoke"  # built, but the smoke test failed
    PASSED = "passed"


class FailureClass(StrEnum):
    SMOKE_IMPORTS = "smoke-imports"  # the smoke test imports what the wheel does not ship
    DYNAMIC_REQUIRES = "dynamic-requires"  # a build requirement asked for by the backend's hook
    ABI3 = "abi3"  # the gate refused a limited-API wheel
    TARGET_LIBS = "target-libs"  # a header or library of the target is missing
    HOST_LEAKAGE = "host-leakage"  # build-machine headers/libraries in the ARM build
    RUST = "rust"
    FORTRAN = "fortran"
    RUNTIME_DEPS = "runtime-deps"  # built, but a runtime dependency has no wheel for the target
    TIMEOUT = "timeout"  # stopped by the survey's build time limit (--build-timeout)
    OTHER = "other"


@dataclass(frozen=True)
class SurveyProject:
    name: str
    rank: int
    parts: tuple[str, ...]  # what its native code is written in (c, c++, cython, mypyc, rust, fortran)


@dataclass(frozen=True)
class ProjectList:
    source: str
    date: str
    projects: tuple[SurveyProject, ...]

    def select(self, names: list[str] | None = None, skip_parts: tuple[str, ...] = (),
               limit: int | None = None) -> list[SurveyProject]:
        if names:
            known = {p.name: p for p in self.projects}
            wanted = [canonicalize_name(n) for n in names]
            return [known.get(n, SurveyProject(n, 0, ())) for n in wanted]
        chosen = [p for p in self.projects if not set(p.parts) & set(skip_parts)]
        return chosen[:limit] if limit else chosen


def load_project_list(path: Path) -> ProjectList:
    """toolchain/survey-projects.toml, validated (unknown keys are errors naming the field)."""
    data = read_toml(path)
    if set(data) - {"ranking", "projects"}:
        raise ConfigError(f"{path}: unknown key(s) {sorted(set(data) - {'ranking', 'projects'})}")
    ranking = data.get("ranking", {})
    if not isinstance(ranking, dict) or set(ranking) - {"source", "date"} or not all(
            isinstance(ranking.get(k), str) for k in ("source", "date")):
        raise ConfigError(f"{path}: [ranking] needs `source` and `date` strings and nothing else")
    out = []
    for i, entry in enumerate(data.get("projects", [])):
        where = f"{path}: projects[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"name", "rank", "parts"}:
            raise ConfigError(f"{where}: only name, rank, parts are allowed")
        name, rank, parts = entry.get("name"), entry.get("rank"), entry.get("parts", [])
        if not isinstance(name, str) or not isinstance(rank, int):
            raise ConfigError(f"{where}: name (string) and rank (integer) are required")
        if not isinstance(parts, list) or set(parts) - set(PARTS):
            raise ConfigError(f"{where} ({name}): parts must be a list of {', '.join(PARTS)}")
        out.append(SurveyProject(canonicalize_name(name), rank, tuple(parts)))
    return ProjectList(ranking["source"], ranking["date"], tuple(sorted(out, key=lambda p: p.rank)))


# --- classification -------------------------------------------------------------------------
_ERROR_LINE = [re.compile(p) for p in (
    r"fatal error:", r"Missing dependencies", r"CMake Error", r"Could NOT find", r"configure: error: (?!in )",
    r"\b[Ee]rror:", r"No module named", r"^[\w.]+(Error|Exception): ", r"ERROR", r"\bFAILED\b", r"\b[Ee]rror\b")]
_CLASSES: list[tuple[FailureClass, re.Pattern[str]]] = [
    (FailureClass.DYNAMIC_REQUIRES, re.compile(r"Missing dependencies|ERROR Backend .*requires|"
                                               r"No module named '(Cython|pybind11|numpy|setuptools_scm)'")),
    # cargo the program, not a path such as ~/.cargo/bin in an environment dump
    (FailureClass.RUST, re.compile(r"(?<![/.\w])cargo(?![/\w])|\brustc\b|maturin|setuptools[-_]rust|Rust compiler")),
    (FailureClass.FORTRAN, re.compile(r"gfortran|[Ff]ortran compiler|\.f90\b")),
    (FailureClass.ABI3, re.compile(r"abi3")),
    (FailureClass.TARGET_LIBS, re.compile(r"fatal error: [^:]+: No such file|cannot find -l|Could NOT find|"
                                          r"By not providing \"Find\S+\.cmake\"|"
                                          r"required library \"\S+\" could not be located|"
                                          r"was not found in the pkg-config|Dependency \S+ found: NO|"
                                          r"needs lib\S+, which the target does not have")),
    # the build machine leaking in: its libraries, or its identity (./configure without --host)
    (FailureClass.HOST_LEAKAGE, re.compile(r"file in wrong format|skipping incompatible /usr/|"
                                           r"Relocations in generic ELF|ELF 64-bit LSB .*x86-64|"
                                           r"cannot run C compiled programs")),
]


def _meaningful(text: str) -> list[str]:
    """Lines of a log without its own comments (the cross environment, the gate's notes)."""
    return [ln.strip() for ln in text.splitlines()
            if ln.strip() and not ln.startswith(("#", "$ ", "ot2wheels-hostguard:"))]


def error_line(text: str) -> str:
    """The most telling line of a build log or error: a compiler's fatal error before a generic one
    (a line ending in ':' gets the next one: "Missing dependencies: Cython>=3")."""
    lines = _meaningful(text)
    for pattern in _ERROR_LINE:
        for i, ln in enumerate(lines):
            if pattern.search(ln):
                more = f" {lines[i + 1]}" if ln.endswith(":") and i + 1 < len(lines) else ""
                return (ln + more)[:300]
    return (lines[-1] if lines else "")[:300]


def build_error_line(error: str, log: str) -> str:
    """A failed build's line: the gate's and the time limit's own message say more than the log;
    a log of comments only (a failure before the compile, an offline crate) says nothing."""
    if error.startswith(("gate", "timeout:")):
        return error_line(error)
    return error_line(log) or error_line(error)


def classify(stage: Stage, text: str, parts: tuple[str, ...] = ()) -> FailureClass | None:
    if stage in (Stage.PASSED, Stage.UNSUPPORTED):
        return None
    if stage == Stage.SMOKE:
        if "cannot get the runtime dependencies" in text:  # not built in this run, none on the index
            return FailureClass.RUNTIME_DEPS
        if "cannot open shared object file" in text:  # a library the target lacks at run time
            return FailureClass.TARGET_LIBS
        # a module the wheel does not ship, or a .so that is no module (pycryptodome's ctypes
        # libraries); not an extension that fails to load (undefined symbol)
        imports = re.search(r"No module named|does not define module export function", text)
        return FailureClass.SMOKE_IMPORTS if imports else FailureClass.OTHER
    if text.lstrip().startswith("timeout:"):  # the build's own error comes first in the text
        return FailureClass.TIMEOUT
    meaningful = "\n".join(_meaningful(text))
    for cls, pattern in _CLASSES:
        if pattern.search(meaningful):
            return cls
    if "rust" in parts:
        return FailureClass.RUST
    if "fortran" in parts:
        return FailureClass.FORTRAN
    return FailureClass.OTHER


@dataclass
class Cell:
    project: str
    version: str
    target: str
    stage: Stage
    failure: FailureClass | None = None
    error: str = ""
    log: str = ""
    wheel: str = ""
    imports: list[str] = field(default_factory=list)
    build_s: float = 0.0
    smoke_s: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stage"] = self.stage.value
        d["failure"] = self.failure.value if self.failure else None
        return d


# --- running ------------------------------------------------------------------------------
def scratch_layout(layout: Layout, scratch: Path | None = None) -> Layout:
    """A checkout-shaped scratch area: its own packages/ and dist/, the real targets and cache."""
    root = scratch or layout.root / "build" / "survey"
    for name in ("targets.toml", "cross-switches.toml"):
        src = layout.root / "toolchain" / name
        if src.is_file():
            (root / "toolchain").mkdir(parents=True, exist_ok=True)
            atomic_copy(src, root / "toolchain" / name)
    (root / "packages").mkdir(parents=True, exist_ok=True)
    return Layout(root=root, cache=layout.cache, dist=root / "dist")


def sdist_releases(client, name: str) -> dict[Version, str | None]:
    """Every final, non-yanked release with an sdist -> that sdist's Requires-Python (index field)."""
    from .plan import _filename_version

    found = {v: f.requires_python for f in client.files(name) if f.is_sdist and not f.yanked
             and (v := _filename_version(f.filename, name)) is not None and not v.is_prerelease}
    if not found:
        raise ConfigError(f"{name}: no final release with an sdist on the index")
    return found


def release_for(releases: dict[Version, str | None], python: str) -> Version | None:
    """What pip takes for a target CPython X.Y: the newest release whose Requires-Python admits it."""
    fitting = [v for v, rp in releases.items() if not _excludes(rp, python)]
    return max(fitting) if fitting else None


def _excludes(requires_python: str | None, python: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version

    try:
        return bool(requires_python) and not SpecifierSet(requires_python or "").contains(
            Version(f"{python}.0"), prereleases=True)
    except InvalidSpecifier:  # recipe.new will say what is wrong with it
        return False


def _log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-200_000:]
    except OSError:
        return ""


def run_survey(layout: Layout, projects: list[SurveyProject], target_names: list[str] | None = None,
               scratch: Path | None = None, jobs: int = 1, say: Say = print, client=None,
               headers: dict[str, str] | None = None, hooks: bool = True, build_timeout_s: float | None = None,
               skip_cells: frozenset[tuple[str, str]] = frozenset(),
               progress: Callable[[list[Cell]], None] | None = None) -> list[Cell]:
    """Generate, build, refine and smoke-test every project on every target; one Cell each.

    Each project is smoke-tested right after its builds, and `progress` gets every cell so far
    after each project (the page is written as the run goes: a killed run loses one project).
    `skip_cells` are (project, target) pairs not to run (done by an earlier, interrupted run)."""
    from .ledger import Ledger
    from .pypi import IndexClient
    from .targets import load_targets

    scr = scratch_layout(layout, scratch)
    targets = load_targets(scr.targets_file).select(target_names or None)
    client = client or IndexClient(layout.cache)
    if headers is None:
        from .debcontents import header_map

        try:
            headers = header_map(targets[0], layout.cache, say=say)
        except Ot2WheelsError as exc:
            say(f"survey: no Contents header map ({str(exc).splitlines()[0]}); hand map only")
            headers = {}
    ledger = Ledger(scr.dist / "ledger.sqlite")
    run_id = ledger.start_run(f"invoke survey ({len(projects)} projects)", jobs)
    cells: list[Cell] = []
    failures = 0
    try:
        for n, proj in enumerate(projects, 1):
            todo = [t for t in targets if (proj.name, t.name) not in skip_cells]
            if not todo:
                continue
            say(f"survey: [{n}/{len(projects)}] {proj.name} on {', '.join(t.name for t in todo)}")
            try:
                mine = _survey_one(scr, proj, todo, client, headers, hooks, jobs, say, ledger, run_id,
                                   build_timeout_s)
            except Ot2WheelsError as exc:  # e.g. the smoke toolchain: this project's cells say it
                text = str(exc)
                mine = [Cell(proj.name, "", t.name, Stage.BUILD, classify(Stage.BUILD, text, proj.parts),
                             error_line(text)) for t in todo]
            cells += mine
            failures += sum(c.stage not in (Stage.PASSED, Stage.UNSUPPORTED) for c in mine)
            if progress is not None:
                progress(cells)
    finally:  # an interrupted run is finished too, with what it got done
        ledger.finish_run(run_id, failures)
    return cells


def _survey_one(scr: Layout, proj: SurveyProject, targets: list[Target], client, headers: dict[str, str],
                hooks: bool, jobs: int, say: Say, ledger, run_id: int, build_timeout_s: float | None) -> list[Cell]:
    """One project on `targets`, each with the release pip would take for its CPython (a runtime
    dependency built earlier in the run is found in dist/)."""
    try:
        releases = sdist_releases(client, proj.name)
    except Ot2WheelsError as exc:
        text = str(exc)
        return [Cell(proj.name, "", t.name, Stage.RECIPE, classify(Stage.RECIPE, text, proj.parts),
                     error_line(text)) for t in targets]
    # like pip: each target gets the newest release its CPython may install; targets that need
    # different releases are surveyed one release after the other, each with its own recipe
    cells: list[Cell] = []
    groups: dict[Version, list[Target]] = {}
    for t in targets:
        if (chosen := release_for(releases, t.python)) is None:
            newest = max(releases)
            cells.append(Cell(proj.name, str(newest), t.name, Stage.UNSUPPORTED, None,
                              f"Requires-Python {releases[newest]} excludes CPython {t.python} "
                              "(and no older release with an sdist admits it)"))
        else:
            groups.setdefault(chosen, []).append(t)
    for version, group in sorted(groups.items()):  # the newest last: its recipe stays in packages/
        cells += _survey_release(scr, proj, str(version), group, client, headers, hooks, jobs, say, ledger,
                                 run_id, build_timeout_s)
    order = {t.name: i for i, t in enumerate(targets)}
    return sorted(cells, key=lambda c: order[c.target])


# Beside each scratch recipe: the target Pythons its build requirements were pinned for (a pin
# for CPython 3.11 may not install on 3.9: setuptools 84 needs 3.10).
PYTHONS_FILE = "generated-for.json"


def recipe_pythons(path: Path, version: str) -> set[str]:
    """The Pythons the scratch recipe at `path` was generated for, if it is for `version`; else none."""
    from .recipes import load_recipe

    stamp = path.with_name(PYTHONS_FILE)
    if not (path.is_file() and stamp.is_file()) or load_recipe(path).version != version:
        return set()
    try:
        pythons = json.loads(stamp.read_text())
    except (OSError, ValueError):  # unreadable: generate again
        return set()
    return {p for p in pythons if isinstance(p, str)} if isinstance(pythons, list) else set()


def _survey_release(scr: Layout, proj: SurveyProject, version: str, targets: list[Target], client,
                    headers: dict[str, str], hooks: bool, jobs: int, say: Say, ledger, run_id: int,
                    build_timeout_s: float | None) -> list[Cell]:
    """One release of a project on the targets that take it: its recipe (kept if it is for this
    version), a build per target, then the smoke test of what built."""
    from . import pipeline
    from .recipe_new import new_recipe, refine_smoke_imports
    from .recipes import load_recipe

    path = scr.packages / proj.name / "recipe.toml"
    try:
        needed = {t.python for t in targets}
        made_for = recipe_pythons(path, version)
        if not needed <= made_for:  # reuse: same recipe, same cache key
            # pinned for every Python it served before too: one recipe per project (--promote)
            pythons = sorted(needed | made_for, key=Version)
            say(f"survey: recipe.new {proj.name}=={version} (CPython {', '.join(pythons)})")
            new_recipe(f"{proj.name}=={version}", scr, force=True, client=client, headers=headers, hooks=hooks,
                       pythons=pythons)
            atomic_write(path.with_name(PYTHONS_FILE), json.dumps(pythons) + "\n")
        # not strict: another project's broken recipe must not stop this one
        project = pipeline.Project.load(scr, strict=False)
        recipe = project.recipe(proj.name)
    except Ot2WheelsError as exc:
        text = str(exc)
        return [Cell(proj.name, version, t.name, Stage.RECIPE, classify(Stage.RECIPE, text, proj.parts),
                     error_line(text)) for t in targets]
    cells: list[Cell] = []
    to_smoke: list[tuple[Cell, Recipe, Target]] = []
    for target in targets:
        if not recipe.supports(target.name, target.python):
            cells.append(Cell(proj.name, version, target.name, Stage.UNSUPPORTED, None,
                              f"Requires-Python {recipe.python} excludes CPython {target.python}"))
            continue
        [result] = pipeline.build_all(project, [(recipe, target)], jobs=jobs, say=say, ledger=ledger,
                                      run_id=run_id, timeout_s=build_timeout_s)
        log = result.record_path.with_suffix(".log")
        cell = Cell(proj.name, version, target.name, Stage.BUILD, log=str(log),
                    build_s=result.record.duration_s or 0.0)
        cells.append(cell)
        if not result.ok or result.wheel is None:
            error = result.record.error or ""
            text = error + "\n" + _log_text(log)
            cell.failure = classify(Stage.BUILD, text, proj.parts)
            # the gate's and the time limit's own message say more than the log's last error
            cell.error = build_error_line(error, _log_text(log))
            continue
        cell.wheel = result.wheel.name
        # refined after every build: the scratch recipes are generated, and the [smoke] table is
        # not part of the build's cache key, so this follows the current rule at no build cost
        refine_smoke_imports(recipe.path, result.wheel)
        recipe = load_recipe(recipe.path, set(project.targets.targets))
        project.recipes[recipe.name] = recipe
        cell.imports = list(recipe.smoke.imports)
        to_smoke.append((cell, recipe, target))
    if to_smoke:
        smokes = pipeline.smoke_all(project, [(r, t) for _c, r, t in to_smoke], say=say, ledger=ledger,
                                    run_id=run_id)
        for (cell, _r, _t), (_r2, smoke) in zip(to_smoke, smokes, strict=True):
            cell.smoke_s = smoke.duration_s
            if smoke.passed:
                cell.stage = Stage.PASSED
            else:
                cell.stage = Stage.SMOKE
                cell.failure = classify(Stage.SMOKE, smoke.output, proj.parts)
                cell.error = error_line(smoke.output)
    return cells


def done_cells(coverage: Path, targets: list[str] | None = None) -> frozenset[tuple[str, str]]:
    """(project, target) pairs an earlier run's coverage.json already has (for `--resume`)."""
    if not coverage.is_file():
        return frozenset()
    try:
        cells = json.loads(coverage.read_text())["cells"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{coverage}: not a coverage.json ({exc}); remove it or run without --resume") from None
    return frozenset((c["project"], c["target"]) for c in cells if not targets or c["target"] in targets)


# --- the page -----------------------------------------------------------------------------
def summarize(cells: list[Cell], projects: list[SurveyProject]) -> dict:
    parts = {p.name: p.parts for p in projects}
    out: dict = {}
    for target in sorted({c.target for c in cells}):
        every = [c for c in cells if c.target == target]
        mine = [c for c in every if c.stage != Stage.UNSUPPORTED]  # the rates count supported projects
        plain = [c for c in mine if not set(parts.get(c.project, ())) & {"rust", "fortran"}]
        out[target] = {
            "unsupported": len(every) - len(mine),
            "projects": len(mine),
            "recipe_ok": sum(c.stage != Stage.RECIPE for c in mine),
            "built": sum(c.stage in (Stage.SMOKE, Stage.PASSED) for c in mine),
            "smoke_passed": sum(c.stage == Stage.PASSED for c in mine),
            "by_class": {fc.value: sum(c.failure == fc for c in mine) for fc in FailureClass},
            "no_rust_fortran": {"projects": len(plain), "passed": sum(c.stage == Stage.PASSED for c in plain)},
        }
    return out


def render_html(data: dict) -> str:
    e = html.escape
    targets = data["targets"]
    cells = {(c["project"], c["target"]): c for c in data["cells"]}
    rows = []
    for proj in data["projects"]:
        tds = []
        for t in targets:
            c = cells.get((proj["name"], t))
            if c is None:
                tds.append("<td>&mdash;</td>")
                continue
            bits = [f"<b>{e(c['stage'])}</b> {e(c['version'])}"]
            if c["failure"]:
                bits.append(f"class: {e(c['failure'])}")
            if c["error"]:
                bits.append(f'<span class="err">{e(c["error"])}</span>')
            if c["imports"]:
                bits.append("imports: " + e(", ".join(c["imports"][:6])) + (" ..." if len(c["imports"]) > 6 else ""))
            tds.append(f'<td class="st-{e(c["stage"])}">' + "<br>".join(bits) + "</td>")
        rows.append(f"<tr><th>{e(proj['name'])}<br><small>#{proj['rank']} {e(', '.join(proj['parts']))}</small>"
                    f"</th>{''.join(tds)}</tr>")
    sums = []
    for t, s in data["summary"].items():
        classes = ", ".join(f"{k} {v}" for k, v in s["by_class"].items() if v) or "none"
        nrf = s["no_rust_fortran"]
        sums.append(f"<li><b>{e(t)}</b>: {s['projects']} projects (+{s['unsupported']} whose newest release "
                    f"does not support its CPython), {s['recipe_ok']} recipes, {s['built']} built, "
                    f"{s['smoke_passed']} smoke-passed; without Rust/Fortran {nrf['passed']}/{nrf['projects']} "
                    f"passed; failures by class: {e(classes)}</li>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ot2wheels coverage</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #888; padding: .4em .6em; vertical-align: top; font-size: 90%; text-align: left; }}
.err {{ display: block; max-width: 40em; font-family: monospace; white-space: pre-wrap; }}
.st-passed {{ background: #c8f0c8; }} .st-smoke {{ background: #f8e0a0; }}
.st-build {{ background: #f4b8b8; }} .st-recipe {{ background: #ddd; }} .st-unsupported {{ color: #666; }}
</style></head><body>
<h1>ot2wheels coverage: generated recipes, no hand edits</h1>
<p>Generated {e(data["generated_at"])}; projects from {e(data["list_source"])} ({e(data["list_date"])}).
Stage reached: recipe (recipe.new failed), build (build or gate failed), smoke (built, smoke test failed),
passed; unsupported: the newest release's Requires-Python excludes the target's CPython (not counted).</p>
<ul>{''.join(sums)}</ul>
<table><tr><th>project</th>{''.join(f'<th>{e(t)}</th>' for t in targets)}</tr>
{chr(10).join(rows)}
</table>
<p><a href="coverage.json">coverage.json</a> holds the same data. <a href="../report/index.html">Build status</a>.</p>
</body></html>
"""


def write_page(cells: list[Cell], projects: list[SurveyProject], plist: ProjectList, out_dir: Path) -> dict:
    """index/coverage/index.html + coverage.json (cells of earlier runs for other projects/targets kept).

    Read, merge and write under a lock: two surveys (one per target) may run at once."""
    from .locks import host_lock_path, locked

    key = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:12]
    with locked(host_lock_path(f"coverage-{key}"), "the coverage page"):
        return _write_page(cells, projects, plist, out_dir)


def _write_page(cells: list[Cell], projects: list[SurveyProject], plist: ProjectList, out_dir: Path) -> dict:
    old = out_dir / "coverage.json"
    previous = json.loads(old.read_text()).get("cells", []) if old.is_file() else []
    fresh = {(c.project, c.target) for c in cells}
    merged = [c for c in previous if (c["project"], c["target"]) not in fresh] + [c.to_dict() for c in cells]
    known = {p.name: p for p in plist.projects} | {p.name: p for p in projects}
    names = sorted({c["project"] for c in merged}, key=lambda n: (known[n].rank if n in known else 10**6, n))
    all_cells = [Cell(**{**c, "stage": Stage(c["stage"]),
                         "failure": FailureClass(c["failure"]) if c["failure"] else None}) for c in merged]
    plist_projects = [known.get(n, SurveyProject(n, 0, ())) for n in names]
    data = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "list_source": plist.source, "list_date": plist.date,
        "targets": sorted({c["target"] for c in merged}),
        "projects": [{"name": p.name, "rank": p.rank, "parts": list(p.parts)} for p in plist_projects],
        "cells": sorted(merged, key=lambda c: (names.index(c["project"]), c["target"])),
        "summary": summarize(all_cells, plist_projects),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "coverage.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    atomic_write(out_dir / "index.html", render_html(data))
    return data


def promote(layout: Layout, name: str, coverage: Path, scratch: Path | None = None, force: bool = False) -> Path:
    """Copy build/survey/packages/NAME/recipe.toml into packages/ if it passed on every default target."""
    from .targets import load_targets

    name = canonicalize_name(name)
    scr_recipe = (scratch or layout.root / "build" / "survey") / "packages" / name / "recipe.toml"
    if not scr_recipe.is_file():
        raise ConfigError(f"{scr_recipe} does not exist; run `invoke survey --project {name}` first")
    if not coverage.is_file():
        raise ConfigError(f"{coverage} does not exist; run `invoke survey` first")
    cells = {c["target"]: c for c in json.loads(coverage.read_text())["cells"] if c["project"] == name}
    needed = [t.name for t in load_targets(layout.targets_file).select(None)]
    missing = [t for t in needed if cells.get(t, {}).get("stage") != Stage.PASSED.value]
    if missing:
        states = ", ".join(f"{t}: {cells[t]['stage'] if t in cells else 'not surveyed'}" for t in missing)
        raise ConfigError(f"{name} has not passed on every default target ({states}); not promoted")
    dest = layout.packages / name / "recipe.toml"
    if dest.exists() and not force:
        raise ConfigError(f"{dest} already exists; pass --force to replace it")
    atomic_copy(scr_recipe, dest)
    return dest
