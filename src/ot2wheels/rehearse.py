"""Install rehearsal: does `pip install REQUIREMENT` work on the target, with our wheels?

The target's own CPython, under qemu-arm, runs pip (a pip wheel from the index, sha256-checked)
with `--only-binary=:all:`: every distribution must come as a wheel, either one we built
(`--find-links` to a wheelhouse of passing builds) or one already on the package index. pip's
configuration of this host is ignored (a robot would not have it); the index URL and CA bundle
are passed explicitly. Then the rehearsal program (e.g. a one-task prefect @flow) runs on the
target with the freshly installed packages.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from .download import ca_bundle
from .errors import SmokeError
from .fsutil import PIP_VARS, PYTHON_VARS, atomic_write, scrubbed_env
from .pypi import IndexClient
from .smoke import target_pip_install
from .targets import Target

Say = Callable[[str], None]
OK_MARK = "ot2wheels-rehearsal-ok"


@dataclass
class RehearsalResult:
    target: str
    requirement: str
    passed: bool
    install_s: float
    run_s: float
    installed: dict[str, str] = field(default_factory=dict)  # name -> version
    from_wheelhouse: list[str] = field(default_factory=list)  # our wheels pip used
    output: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        return (f"rehearsal {verdict} on {self.target}: {self.requirement}, {len(self.installed)} distributions "
                f"({len(self.from_wheelhouse)} from our wheels: {', '.join(self.from_wheelhouse) or 'none'}); "
                f"install {self.install_s:.0f}s, run {self.run_s:.0f}s")


def pip_wheel(client: IndexClient, target: Target, cache: Path) -> Path:
    """The newest pip wheel that runs on the target's Python, downloaded and sha256-checked once."""
    py = Version(target.marker_environment()["python_full_version"])
    best = None
    for f in client.files("pip"):
        if not f.filename.endswith("-py3-none-any.whl") or f.yanked:
            continue
        v = parse_wheel_filename(f.filename)[1]
        if v.is_prerelease or (f.requires_python and not _fits(f.requires_python, py)):
            continue
        if best is None or v > best[0]:
            best = (v, f)
    if best is None:
        raise SmokeError(f"no pip wheel on {client.index_url} runs on CPython {target.python}")
    dest = cache / "rehearse" / best[1].filename
    if not dest.is_file():
        atomic_write(dest, client.download(best[1]))  # verified against the index's sha256
    return dest


def _fits(spec: str, version: Version) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except InvalidSpecifier:
        return True


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The host environment without anything that configures pip or Python, plus `extra`."""
    return {**scrubbed_env((*PIP_VARS, *PYTHON_VARS), PIP_CONFIG_FILE=os.devnull, PYTHONNOUSERSITE="1"), **extra}


def derived_constraints(constraints: Path | None, ours: list[Path], dest: Path) -> Path | None:
    """The constraints with each distribution we provide a wheel for pinned to our wheel's
    version: the rehearsal must install our build, not a newer release the index has a wheel of
    (cryptography 44+ ships armv7l wheels needing glibc 2.31, the robot has 2.25)."""
    if constraints is None:
        return None
    provided: dict[str, str] = {}
    for w in ours:
        project, version, *_ = parse_wheel_filename(w.name)
        provided[canonicalize_name(project)] = str(version)
    lines = []
    for line in constraints.read_text().splitlines():
        spec = line.split("#", 1)[0].strip().split("==", 1)[0].strip()
        key = canonicalize_name(spec) if spec else ""
        if key in provided:
            lines.append(f"{key}=={provided.pop(key)}  # ours (was: {line.strip()})")
        else:
            lines.append(line)
    lines += [f"{key}=={version}  # ours" for key, version in sorted(provided.items())]
    dest.write_text("\n".join(lines) + "\n")
    return dest


def target_python_wrapper(toolchain, bin_dir: Path) -> tuple[Path, dict[str, str]]:
    """A `pythonX.Y` script that runs the target CPython under qemu-arm, and the env it needs.

    Programs that start more Python processes (prefect's temporary API server does) use
    `sys.executable`. qemu-arm's `-0` makes that this script, so children run under qemu too,
    without binfmt_misc; PYTHONHOME keeps the target's stdlib found from the script's path.
    """
    qemu = " ".join(shlex.quote(a) for a in toolchain.qemu_command())
    python = shlex.quote(str(toolchain.target_python))
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"python{toolchain.target.python}"
    script.write_text(f'#!/bin/sh\nexec {qemu} -0 "$0" {python} "$@"\n')
    script.chmod(0o755)
    return script, {"PYTHONHOME": str(toolchain.sysroot / "usr")}


def rehearse(requirement: str, toolchain, wheels: list[Path], client: IndexClient, cache: Path, *,
             code: str = "", constraints: Path | None = None, timeout: float = 3600,
             say: Say = print) -> RehearsalResult:
    """Install `requirement` with the target's CPython under qemu-arm, then run `code` there."""
    target: Target = toolchain.target
    pip = pip_wheel(client, target, cache)
    work_root = cache / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"rehearse-{target.name}-", dir=work_root) as tmp_s:
        tmp = Path(tmp_s)
        house, site, home = tmp / "wheelhouse", tmp / "site", tmp / "home"
        for d in (house, site, home):
            d.mkdir()
        # pip runs the target CPython directly: it reads sys.executable's ELF header to decide
        # whether manylinux armv7l wheels fit (hard-float), so it must not be the wrapper script.
        python, py_env = target_python_wrapper(toolchain, tmp / "bin")
        for w in wheels:
            (house / w.name).symlink_to(w.resolve())
        cons = derived_constraints(constraints, wheels, tmp / "constraints.txt")
        report = tmp / "report.json"
        cert = ca_bundle()
        options = ["--only-binary=:all:", "--find-links", str(house), "--report", str(report),
                   *(["--constraint", str(cons)] if cons else []), *(["--cert", cert] if cert else [])]
        say(f"[{target.name}] rehearsal: pip install --only-binary=:all: {requirement} under {target.architecture.qemu} "
            f"({len(wheels)} wheels of ours)")
        started = time.monotonic()
        try:  # the target CPython itself runs pip, as the device would (smoke.target_pip_install)
            install_out = target_pip_install(toolchain, pip, client.index_url, [*options, requirement], site,
                                             timeout=timeout)
            install_ok = True
        except SmokeError as exc:
            install_out, install_ok = str(exc), False
        install_s = round(time.monotonic() - started, 1)
        installed, ours = _read_report(report, house)
        if not install_ok:
            return RehearsalResult(target.name, requirement, False, install_s, 0.0, installed, ours,
                                   f"$ pip install ... {requirement}\n{install_out[-4000:]}")
        say(f"[{target.name}] rehearsal: installed {len(installed)} distributions in {install_s:.0f}s "
            f"({len(ours)} of ours); running the rehearsal program")
        program = tmp / "rehearsal.py"
        program.write_text((code or f"import {canonicalize_name(requirement).split('=')[0].replace('-', '_')}\n")
                           + f"\nprint({OK_MARK!r})\n")
        run_env = _clean_env({**py_env, "HOME": str(home), "PYTHONPATH": str(site)})  # HOME: a fresh one
        started = time.monotonic()
        try:
            run = subprocess.run([str(python), str(program)], env=run_env, cwd=tmp, capture_output=True, text=True,
                                 timeout=timeout)
            # the program's own output and the tail of stderr apart: a library's shutdown noise
            # on stderr (prefect's aiosqlite under load) must not push the result out of view
            run_out, run_rc = run.stdout[-2500:], run.returncode
            if run.stderr.strip():
                run_out += f"\n[stderr]\n{run.stderr[-1500:]}"
            passed = run_rc == 0 and OK_MARK in run.stdout
        except subprocess.TimeoutExpired:
            run_out, run_rc, passed = f"the rehearsal program timed out after {timeout}s", -1, False
        run_s = round(time.monotonic() - started, 1)
    return RehearsalResult(target.name, requirement, passed, install_s, run_s, installed, ours,
                           f"$ python rehearsal.py\n{run_out}")


def _read_report(report: Path, house: Path) -> tuple[dict[str, str], list[str]]:
    """(name -> version installed, our wheel files used) from pip's --report."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return {}, []
    installed: dict[str, str] = {}
    ours: list[str] = []
    for item in data.get("install", []):
        meta = item.get("metadata", {})
        installed[canonicalize_name(meta.get("name", "?"))] = meta.get("version", "?")
        url = item.get("download_info", {}).get("url", "")
        if url.startswith("file:") and f"/{house.name}/" in url:
            ours.append(url.rsplit("/", 1)[-1])
    return installed, sorted(ours)


# --- the landing page's instructions, run as printed -------------------------------------------------
PIP_VAR = "OT2WHEELS_REHEARSE_PIP"  # a pip wheel the `python3` below runs pip from, when set


@dataclass(frozen=True)
class Device:
    """A stand-in for the device's shell: `python3` on PATH is the target's CPython under qemu-arm.

    `root/bin/python3` is a script running the sysroot's CPython with qemu-arm's `-0 "$0"`, so
    sys.executable is the script and the interpreter finds its stdlib through `root/lib`, a link
    to the sysroot's /usr/lib (no PYTHONHOME, which would switch off venv detection). Virtual
    environments made from it work like the device's. When $OT2WHEELS_REHEARSE_PIP names a pip
    wheel, `python3 -m pip` runs that pip (old or current) instead of the environment's own.
    """

    root: Path
    home: Path
    env: dict[str, str]

    def run(self, script: str, cwd: Path, *, pip: Path | None = None, timeout: float = 900) -> tuple[int, str]:
        """Run `script` with `sh -e` as the device's user would type it; (exit code, output)."""
        env = {**self.env, **({PIP_VAR: str(pip)} if pip else {})}
        try:
            proc = subprocess.run(["sh", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return -1, f"timed out after {timeout}s"
        return proc.returncode, proc.stdout + proc.stderr


def make_device(toolchain, work: Path, *, index_url: str, config_dirs: Path | None = None) -> Device:
    """A device shell under `work`: its own HOME, no pip configuration of this host.

    `index_url` stands in for pip's default index (PyPI); `config_dirs` holds `pip/pip.conf` files
    read as the system-wide configuration (XDG_CONFIG_DIRS), like the device's /etc/pip.conf.
    """
    root, home = work / "device", work / "home"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    lib = root / "lib"
    if not lib.is_symlink():
        lib.symlink_to(toolchain.sysroot / "usr" / "lib")
    qemu = " ".join(shlex.quote(a) for a in toolchain.qemu_command())
    script = root / "bin" / "python3"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ -n "${PIP_VAR}" ]; then PYTHONPATH="${PIP_VAR}"; export PYTHONPATH; fi\n'
        f'exec {qemu} -0 "$0" {shlex.quote(str(toolchain.target_python))} "$@"\n')
    script.chmod(0o755)
    env = scrubbed_env((*PYTHON_VARS, *PIP_VARS, "UV_", "XDG_"),
                       PATH=f"{root / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}", HOME=str(home),
                       XDG_CONFIG_DIRS=str(config_dirs or work / "no-system-config"),
                       PIP_INDEX_URL=index_url, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
                       PIP_NO_CACHE_DIR="1")
    return Device(root, home, env)
