"""Smoke tests: install a wheel into a fresh target directory and exercise it under qemu-user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import SmokeError
from .recipes import Recipe
from .targets import Target
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
native = sorted(
    m.__file__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and m.__file__.startswith(root) and m.__file__.endswith(".so")
)
if not native:
    raise SystemExit("smoke: none of the wheel's compiled extensions was loaded")
print("native modules:", *[n[len(root) + 1:] for n in native], sep="\n  ")
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

    def to_dict(self) -> dict:
        return asdict(self)


def pip_target_args(target: Target) -> list[str]:
    """Host pip options that select wheels for the target's interpreter and platforms."""
    args = ["--only-binary=:all:", "--python-version", target.python, "--implementation", "cp",
            "--abi", target.cp, "--abi", "abi3", "--abi", "none"]
    for plat in target.platform_tags():
        args += ["--platform", plat]
    return args


def _pip_python(python: Path | None) -> str:
    """The host CPython of the target's X.Y when it has pip (dependency markers such as
    `python_version < "3.11"` are evaluated by the interpreter running pip), else ours."""
    if python is not None:
        probe = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True)
        if probe.returncode == 0:
            return str(python)
    return sys.executable


def install_for_target(target: Target, dest: Path, requirements: list[str],
                       find_links: list[Path] = (), index: bool = True, python: Path | None = None) -> str:
    """`pip install --target dest` of target wheels, run on the host; returns pip's output."""
    cmd = [_pip_python(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--no-compile", "--target", str(dest), *pip_target_args(target)]
    for d in find_links:
        cmd += ["--find-links", str(d)]
    if not index:
        cmd.append("--no-index")
    cmd += requirements
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "_PYTHON"))}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SmokeError(f"cannot install {' '.join(requirements)} for {target.name}:\n"
                         f"{(result.stdout + result.stderr).strip()[-2000:]}")
    return result.stdout


def run_smoke(recipe: Recipe, toolchain: Toolchain, site: Path, timeout: float = 300) -> tuple[bool, str]:
    """Run the recipe's smoke test in the target CPython under qemu-user, with `site` on its path."""
    spec = {"root": str(site), "imports": list(recipe.smoke.imports), "code": recipe.smoke.code,
            "mark": OK_MARK}
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


def smoke_test(recipe: Recipe, wheel: Path, toolchain: Toolchain, timeout: float = 300) -> SmokeResult:
    """Install `wheel` (+ its runtime dependencies) in a fresh dir and run the recipe's smoke test."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ot2wheels-smoke-") as tmp:
        site = Path(tmp) / "site"
        # Our other wheels for this target (dist/<target>/*/) too: pandas needs our numpy.
        ours = [wheel.parent, *sorted(d for d in wheel.parent.parent.iterdir() if d.is_dir() and d != wheel.parent)]
        pip_out = install_for_target(toolchain.target, site, [str(wheel), *recipe.smoke.requires],
                                     find_links=ours, python=toolchain.build_python())
        passed, output = run_smoke(recipe, toolchain, site, timeout)
    return SmokeResult(wheel.name, toolchain.target.name, passed, round(time.monotonic() - started, 2),
                       f"$ pip install --target ... {wheel.name}\n{pip_out[-1500:]}\n"
                       f"$ {toolchain.target.architecture.qemu} {toolchain.target_python.name} <smoke test>\n{output}")


def target_pip_install(toolchain: Toolchain, pip_wheel: Path, index_url: str, requirements: list[str],
                       site: Path, timeout: float = 900) -> str:
    """Install with the target's own CPython running `pip_wheel` under qemu-user, as the device would.

    The host's pip configuration is hidden (a robot has none) and only `index_url` is used.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "_PYTHON"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
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
