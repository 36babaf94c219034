"""Smoke tests: install a wheel into a fresh target directory and exercise it under qemu-user.

The warm path costs little more than the target CPython's start under qemu:

- wheels are unpacked with `installer` (no pip process per wheel); their runtime dependencies
  (Requires-Dist with the target's markers, plus the recipe's `smoke.requires`) are resolved
  and downloaded by one host `pip download` per target and set of requirements, kept in the
  cache, and each wheel gets exactly its own dependency closure from that wheelhouse;
- the wheels of one target (and sysroot) are checked in one qemu run: a small driver in the
  target CPython forks a child per wheel, before any wheel is imported, so each check still
  starts from a fresh interpreter state, in its own directory, with its own output file,
  exit status and time limit (a crash or hang is the failure of that wheel alone).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename

from . import buildenv
from .errors import SmokeError
from .fsutil import PIP_VARS, PYTHON_VARS, atomic_write, scrubbed_env
from .locks import cache_lock
from .pypi import CoreMetadata
from .recipes import Recipe
from .records import Outcome
from .targets import Target, pip_target_args
from .toolchains import Toolchain

OK_MARK = "OT2WHEELS-SMOKE-OK"

# Runs in the target's CPython. It proves the wheel's own compiled code was loaded (a pure
# fallback from somewhere else must not pass), then runs the recipe's snippet.
_RUNNER = r"""
import importlib, json, sys
spec = json.loads(sys.argv[1])
root = spec["root"]
for name in spec["imports"]:
    importlib.import_module(name)
# Every shared object of [smoke] load is opened with RTLD_NOW: an unresolved symbol fails here. One
# that exports PyInit_<name> and lies in packages is then imported too; an import that fails only
# because a module is missing from the whole environment (not shipped by the wheel nor by its
# requirements: zstandard's optional cffi backend, ruamel.yaml for its C loader) is an optional
# feature of the wheel, so its native check above is what counts.
import ctypes, importlib.util, os
loaded = []
for rel in spec.get("load", []):
    handle = ctypes.CDLL(os.path.join(root, rel), mode=os.RTLD_NOW)
    loaded.append(rel)
    parts = rel.split("/")
    # pkg/__init__.so (mypyc compiles package inits) is the package pkg: imported as pkg.__init__
    # it would run the package's init a second time under a name that is no package.
    modname = ".".join([*parts[:-1], parts[-1].split(".", 1)[0]]).removesuffix(".__init__")
    if not hasattr(handle, "PyInit_" + modname.rsplit(".", 1)[-1]) or not all(
            os.path.isfile(os.path.join(root, *parts[:i], "__init__.py")) for i in range(1, len(parts))):
        continue
    try:
        importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if not missing or importlib.util.find_spec(missing) is not None:
            raise
        print(f"not imported: {rel} (needs {exc.name}, which neither the wheel nor its requirements provide)")
native = sorted(
    m.__file__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and m.__file__.startswith(root) and m.__file__.endswith(".so")
)
if not native and not loaded:
    raise SystemExit("smoke: none of the wheel's compiled extensions was loaded")
print("native modules:", *[n[len(root) + 1:] for n in native], sep="\n  ")
if loaded:
    print("shared objects opened:", *loaded, sep="\n  ")
exec(compile(spec["code"], "<smoke>", "exec"), {"__name__": "__smoke__"})
print(spec["mark"])
"""


@dataclass
class SmokeResult:
    wheel: str
    target: str
    passed: bool
    duration_s: float
    output: str

    @property
    def outcome(self) -> Outcome:
        return Outcome.PASSED if self.passed else Outcome.FAILED

    def to_dict(self) -> dict:
        return asdict(self)


def _pip_python(python: Path | None) -> str:
    """The host CPython of the target's X.Y when it has pip (dependency markers such as
    `python_version < "3.11"` are evaluated by the interpreter running pip), else ours."""
    if python is not None:
        probe = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True)
        if probe.returncode == 0:
            return str(python)
    return sys.executable


def install_for_target(target: Target, dest: Path, requirements: list[str],
                       find_links: Sequence[Path] = (), index: bool = True, python: Path | None = None) -> str:
    """`pip install --target dest` of target wheels, run on the host; returns pip's output."""
    cmd = [_pip_python(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--no-compile", "--target", str(dest), *pip_target_args(target)]
    for d in find_links:
        cmd += ["--find-links", str(d)]
    if not index:
        cmd.append("--no-index")
    cmd += requirements
    result = subprocess.run(cmd, capture_output=True, text=True, env=scrubbed_env())
    if result.returncode != 0:
        raise SmokeError(f"cannot install {' '.join(requirements)} for {target.name}:\n"
                         f"{(result.stdout + result.stderr).strip()[-2000:]}")
    return result.stdout


# -- runtime dependencies ------------------------------------------------------------------

def _wheel_metadata(wheel: Path) -> CoreMetadata:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(names) != 1:
            raise SmokeError(f"{wheel}: expected one .dist-info/METADATA, found {len(names)}; rebuild the wheel")
        return CoreMetadata.parse(zf.read(names[0]))


def _requirements(lines: Sequence[str], where: str) -> list[Requirement]:
    try:
        return [Requirement(line) for line in lines]
    except InvalidRequirement as exc:
        raise SmokeError(f"{where}: bad requirement: {exc}") from None


def _active(reqs: list[Requirement], env: dict[str, str], extras: frozenset[str]) -> list[Requirement]:
    return [r for r in reqs
            if r.marker is None or any(r.marker.evaluate({**env, "extra": e}) for e in ({""} | extras))]


def _direct_requirements(recipe: Recipe, wheel: Path, target: Target) -> list[Requirement]:
    """What the wheel needs at run time on the target, plus what its smoke test needs."""
    env = target.marker_environment()
    own = _requirements(_wheel_metadata(wheel).requires_dist, f"{wheel.name} Requires-Dist")
    extra = _requirements(recipe.smoke.requires, f"recipe {recipe.name} [smoke] requires")
    return _active(own, env, frozenset()) + _active(extra, env, frozenset())


def runtime_wheelhouse(toolchain: Toolchain, requirements: Sequence[str], find_links: Sequence[Path],
                       cache: Path) -> Path:
    """One directory with target wheels for all of `requirements` (one pip resolution), cached.

    Keyed by the target and the exact requirement set; a complete directory is never rebuilt.
    """
    target = toolchain.target
    key = hashlib.sha256(json.dumps([target.name, target.python, target.platform_tags(), sorted(requirements),
                                     sorted(str(p) for p in find_links)]).encode()).hexdigest()[:20]
    house = cache / "smoke-wheels" / target.name / key
    done = house / ".complete"
    if done.is_file():
        return house
    with cache_lock(cache, f"smoke-wheels-{target.name}-{key}"):
        if done.is_file():
            return house
        shutil.rmtree(house, ignore_errors=True)  # what an interrupted attempt left
        house.mkdir(parents=True)
        # pip of the build Python (it evaluates markers with its own X.Y): a build environment's,
        # since a build Python unpacked from a suite's .debs has no pip of its own
        pip_python = buildenv.ensure_build_env(toolchain.build_python(), (), cache)
        cmd = [str(pip_python), "-m", "pip", "download", "--disable-pip-version-check",
               "--no-input", "--dest", str(house), *pip_target_args(target)]
        for d in find_links:
            cmd += ["--find-links", str(d)]
        result = subprocess.run([*cmd, *sorted(requirements)], capture_output=True, text=True, env=scrubbed_env())
        if result.returncode != 0:
            raise SmokeError(f"cannot get the runtime dependencies {' '.join(sorted(requirements))} for "
                             f"{target.name}:\n{(result.stdout + result.stderr).strip()[-2000:]}")
        atomic_write(done, "\n".join(sorted(requirements)) + "\n")
    return house


def dependency_closure(wheel: Path, direct: list[Requirement], wheelhouse: Path | None,
                       target: Target) -> list[Path]:
    """The wheels of `wheelhouse` that `wheel` needs (its own closure only; the wheel itself is never
    replaced by a copy from the wheelhouse)."""
    own_name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
    available: dict[NormalizedName, Path] = {}
    for f in sorted(wheelhouse.glob("*.whl")) if wheelhouse else []:
        try:
            available[canonicalize_name(parse_wheel_filename(f.name)[0])] = f
        except InvalidWheelFilename:
            continue
    env = target.marker_environment()
    chosen: dict[NormalizedName, Path] = {}
    todo, seen = list(direct), set()
    while todo:
        req = todo.pop()
        name, extras = canonicalize_name(req.name), frozenset(canonicalize_name(e) for e in req.extras)
        path = wheel if name == own_name else available.get(name)
        if path is None:
            raise SmokeError(f"{wheel.name}: runtime dependency {req} has no target wheel in {wheelhouse}")
        version = parse_wheel_filename(path.name)[1]
        if not req.specifier.contains(version, prereleases=True):
            raise SmokeError(f"{wheel.name}: runtime dependency {req} does not match the resolved {name} {version}")
        if name == own_name or (name, extras) in seen:
            continue
        seen.add((name, extras))
        chosen[name] = path
        todo += _active(_requirements(_wheel_metadata(path).requires_dist, f"{path.name} Requires-Dist"), env, extras)
    return sorted(chosen.values())


def install_wheels(wheels: Sequence[Path], site: Path, interpreter: str) -> None:
    """Unpack wheels into `site` (a `pip install --target` layout), without bytecode."""
    scheme = {"purelib": str(site), "platlib": str(site), "scripts": str(site / "bin"),
              "headers": str(site / "include"), "data": str(site / "data")}
    for w in wheels:
        dest = SchemeDictionaryDestination(scheme, interpreter=interpreter, script_kind="posix")
        try:
            with WheelFile.open(w) as source:
                install(source, dest, {"INSTALLER": b"ot2wheels-smoke\n"})
        except Exception as exc:
            raise SmokeError(f"cannot install {w.name}: {type(exc).__name__}: {exc}") from None


def _compile_bytecode(toolchain: Toolchain, sites: Sequence[Path]) -> None:
    """Byte-compile the installed files with a host CPython of the target's X.Y (same bytecode), as
    pip does on the device; else the target CPython compiles them under qemu on every check."""
    python = toolchain.build_python()
    run = subprocess.run([str(python), "-m", "compileall", "-q", *map(str, sites)], capture_output=True,
                         text=True, env=scrubbed_env())
    if run.returncode != 0:
        raise SmokeError(f"{python.name} -m compileall failed:\n{(run.stdout + run.stderr).strip()[-2000:]}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare_sites(toolchain: Toolchain, closures: Sequence[tuple[Path, Sequence[Path]]], cache: Path) -> list[Path]:
    """For each (wheel, dependency wheels): an installed, byte-compiled `site` directory, cached by the
    sha256 of every wheel in it. Callers copy it; the cached tree itself is never run.

    Trees are made in a temp dir beside their place and renamed into it whole, so a tree that
    exists is complete (a concurrent run that loses the rename drops its own copy)."""
    target = toolchain.target
    root = cache / "smoke-sites" / target.name
    places: list[Path] = []
    todo: list[tuple[Path, Path, Path, Sequence[Path]]] = []  # temp dir, place, wheel, dependencies
    for wheel, deps in closures:
        key = hashlib.sha256(json.dumps([target.python, _sha256(wheel), sorted(_sha256(d) for d in deps)])
                             .encode()).hexdigest()[:24]
        place = root / key
        places.append(place)
        if not place.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            todo.append((Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root)), place, wheel, deps))
    try:
        for tmp, _place, wheel, deps in todo:
            install_wheels([wheel, *deps], tmp / "site", str(toolchain.target_python))
        if todo:
            _compile_bytecode(toolchain, [t[0] / "site" for t in todo])
    except BaseException:
        for t in todo:
            shutil.rmtree(t[0], ignore_errors=True)
        raise
    for tmp, place, _wheel, _deps in todo:
        try:
            tmp.rename(place)
        except OSError:  # made meanwhile by another run
            shutil.rmtree(tmp, ignore_errors=True)
    return [place / "site" for place in places]


# -- running -------------------------------------------------------------------------------

def run_smoke(recipe: Recipe, toolchain: Toolchain, site: Path, timeout: float = 300) -> tuple[bool, str]:
    """Run the recipe's smoke test in the target CPython under qemu-user, with `site` on its path."""
    spec = {"root": str(site), "imports": list(recipe.smoke.imports), "load": list(recipe.smoke.load),
            "code": recipe.smoke.code, "mark": OK_MARK}
    try:
        run = toolchain.run_target(
            [str(toolchain.target_python), "-c", _RUNNER, json.dumps(spec)],
            env={"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"},
            timeout=timeout,
        )
        output, code = run.stdout + run.stderr, run.returncode
    except subprocess.TimeoutExpired:
        output, code = f"timed out after {timeout}s under {toolchain.target.architecture.qemu}", -1
    return code == 0 and OK_MARK in output, output


RESULT_MARK = "OT2WHEELS-SMOKE-RESULT "

# Runs in the target's CPython: one fork per wheel, taken before any wheel code is imported, so
# every check starts from the same fresh state; output goes to the wheel's own file, SIGALRM ends
# a check that hangs, and the parent reports each child's exit status on its own line. Up to
# `parallel` checks run at once (they are independent processes).
_DRIVER = r"""
import json, os, signal, sys, time
runner, parallel, pending = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])


def check(job):
    code = 1
    try:
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.chdir(job["cwd"])
        sys.path.insert(0, job["root"])
        sys.argv = ["-c", json.dumps(job["spec"])]
        signal.alarm(job["timeout"])
        exec(compile(runner, "<smoke>", "exec"), {"__name__": "__main__"})
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


running = {}
while pending or running:
    while pending and len(running) < parallel:
        job = pending.pop(0)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            check(job)
        running[pid] = (job, time.monotonic())
    pid, status = os.wait()
    if pid in running:
        job, started = running.pop(pid)
        print(__MARK__ + json.dumps({"index": job["index"], "exit": os.waitstatus_to_exitcode(status),
                                      "seconds": round(time.monotonic() - started, 3)}), flush=True)
""".replace("__MARK__", repr(RESULT_MARK))


@dataclass(frozen=True)
class _Job:
    index: int
    recipe: Recipe
    wheel: Path
    site: Path
    log: Path
    install_s: float
    installed: tuple[str, ...]


def _check_in_one_run(toolchain: Toolchain, jobs: list[_Job], timeout: int,
                      parallel: int) -> tuple[dict[int, dict], str]:
    """Run the checks of `jobs` in one target CPython under qemu-user; per-job results and the driver's output."""
    specs = [{"index": j.index, "root": str(j.site), "cwd": str(j.site.parent), "log": str(j.log),
              "timeout": timeout, "spec": {"root": str(j.site), "imports": list(j.recipe.smoke.imports),
                                           "load": list(j.recipe.smoke.load), "code": j.recipe.smoke.code, "mark": OK_MARK}} for j in jobs]
    argv = [*toolchain.qemu_command(), str(toolchain.target_python), "-c", _DRIVER, _RUNNER, str(parallel),
            json.dumps(specs)]
    # its own process group: checks the driver could not reap (it died, or was killed) go with it
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=scrubbed_env(PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1"))
    try:
        output, _ = proc.communicate(timeout=timeout * len(jobs) + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0] + "\nthe qemu-user run timed out"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    results = {}
    for line in output.splitlines():
        if line.startswith(RESULT_MARK):
            data = json.loads(line[len(RESULT_MARK):])
            results[data["index"]] = data
    rest = "\n".join(line for line in output.splitlines() if not line.startswith(RESULT_MARK))
    return results, rest


def _find_links(wheels: Sequence[Path]) -> list[Path]:
    """The wheels' folders, and the same target's other project folders of the dist: runtime
    dependencies may be wheels built here too (cryptography needs our cffi)."""
    dirs = {w.parent for w in wheels}
    siblings = {d for w in wheels if w.parent.parent.is_dir() for d in w.parent.parent.iterdir() if d.is_dir()}
    return sorted(dirs) + sorted(siblings - dirs)


def smoke_many(items: Sequence[tuple[Recipe, Path]], toolchain: Toolchain, cache: Path | None = None,
               timeout: int = 300, parallel: int | None = None) -> list[SmokeResult]:
    """Smoke-test several wheels for one toolchain: each in its own fresh directory with its own
    dependency closure, all checked in one qemu-user run, `parallel` at a time (default: cores).
    One result per item, in order."""
    from .paths import default_cache_dir

    cache = cache or default_cache_dir()
    parallel = max(1, parallel or os.cpu_count() or 1)
    target = toolchain.target
    qemu = target.architecture.qemu
    out: dict[int, SmokeResult] = {}
    with tempfile.TemporaryDirectory(prefix="ot2wheels-smoke-") as tmp:
        direct: dict[int, list[Requirement]] = {}
        for i, (recipe, wheel) in enumerate(items):
            try:
                direct[i] = _direct_requirements(recipe, wheel, target)
            except (SmokeError, OSError, zipfile.BadZipFile) as exc:
                out[i] = SmokeResult(wheel.name, target.name, False, 0.0, f"$ read {wheel.name}\n{exc}")
        wanted = sorted({str(r) for reqs in direct.values() for r in reqs})
        wheelhouse, house_error = None, False
        if wanted:
            try:
                wheelhouse = runtime_wheelhouse(toolchain, wanted, _find_links([w for _r, w in items]), cache)
            except SmokeError:
                house_error = True
        closures: dict[int, list[Path]] = {}
        for i, (_recipe, wheel) in enumerate(items):
            if i in out:
                continue
            try:
                house = wheelhouse
                if house_error and direct[i]:  # the shared resolution failed: whose requirements fail?
                    house = runtime_wheelhouse(toolchain, sorted({str(r) for r in direct[i]}), _find_links([wheel]),
                                               cache)
                closures[i] = dependency_closure(wheel, direct[i], house, target)
            except (SmokeError, OSError, zipfile.BadZipFile) as exc:
                out[i] = SmokeResult(wheel.name, target.name, False, 0.0, f"$ install {wheel.name}\n{exc}")
        started = time.monotonic()
        try:
            prepared = dict(zip(closures, prepare_sites(toolchain, [(items[i][1], d) for i, d in closures.items()],
                                                        cache), strict=True))
        except (SmokeError, OSError):  # the batch's install failed: find whose, one by one
            prepared = {}
            for i, deps in closures.items():
                try:
                    [prepared[i]] = prepare_sites(toolchain, [(items[i][1], deps)], cache)
                except (SmokeError, OSError) as one:
                    out[i] = SmokeResult(items[i][1].name, target.name, False, 0.0,
                                         f"$ install {items[i][1].name}\n{one}")
        share = (time.monotonic() - started) / max(1, len(prepared))
        jobs = []
        for i, tree in prepared.items():
            recipe, wheel = items[i]
            begun = time.monotonic()
            site = Path(tmp) / str(i) / "site"
            shutil.copytree(tree, site)  # a fresh directory per check; copy2 keeps the .pyc valid
            jobs.append(_Job(i, recipe, wheel, site, Path(tmp) / str(i) / "output.txt",
                             share + time.monotonic() - begun, tuple(d.name for d in closures[i])))
        batches = [jobs]  # normally one; after a driver died, each wheel it did not report alone
        while batches:
            batch = batches.pop(0)
            started = time.monotonic()
            results, driver_out = _check_in_one_run(toolchain, batch, timeout, parallel if len(batch) > 1 else 1)
            missed = [j for j in batch if j.index not in results]
            if missed and len(batch) > 1:
                batches += [[j] for j in missed]
            start_share = max(0.0, time.monotonic() - started - sum(r["seconds"] for r in results.values()))
            start_share /= max(1, len(batch))
            for j in batch:
                r = results.get(j.index)
                if r is None and len(batch) > 1:
                    continue
                log = j.log.read_text(errors="replace") if j.log.is_file() else ""
                if r is None:
                    passed, log = False, f"{log}\nthe {qemu} run ended during this check:\n{driver_out[-2000:]}"
                else:
                    passed = r["exit"] == 0 and OK_MARK in log
                    if r["exit"] == -14:
                        log += f"\ntimed out after {timeout}s under {qemu}"
                    elif r["exit"] != 0:
                        log += f"\nexit status {r['exit']}"
                seconds = j.install_s + (r["seconds"] if r else 0.0) + start_share
                also = f" + {', '.join(j.installed)}" if j.installed else ""
                out[j.index] = SmokeResult(j.wheel.name, target.name, passed, round(seconds, 2),
                                           f"$ install {j.wheel.name}{also}\n"
                                           f"$ {qemu} {toolchain.target_python.name} <smoke test>\n{log}")
    return [out[i] for i in range(len(items))]


def smoke_test(recipe: Recipe, wheel: Path, toolchain: Toolchain, timeout: int = 300,
               cache: Path | None = None) -> SmokeResult:
    """Install `wheel` (+ its runtime dependencies) in a fresh dir and run the recipe's smoke test."""
    return smoke_many([(recipe, wheel)], toolchain, cache, timeout)[0]


def target_pip_install(toolchain: Toolchain, pip_wheel: Path, index_url: str, requirements: list[str],
                       site: Path, timeout: float = 900) -> str:
    """Install with the target's own CPython running `pip_wheel` under qemu-user, as the device would.

    The host's pip configuration is hidden (a robot has none) and only `index_url` is used.
    """
    env = scrubbed_env((*PYTHON_VARS, *PIP_VARS), PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1",
                       PIP_DISABLE_PIP_VERSION_CHECK="1")
    argv = [str(toolchain.target_python), f"{pip_wheel}/pip", "install", "--no-input", "--no-compile",
            "--index-url", index_url, "--target", str(site), *requirements]
    qemu = toolchain.target.architecture.qemu
    try:
        run = subprocess.run([*toolchain.qemu_command(), *argv], env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SmokeError(f"{pip_wheel.name} under {qemu} timed out after {timeout}s") from None
    if run.returncode != 0:
        raise SmokeError(f"{pip_wheel.name} under {qemu} could not install {' '.join(requirements)} "
                         f"from {index_url}:\n{(run.stdout + run.stderr)[-2500:]}")
    return run.stdout
