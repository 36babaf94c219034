"""Buildroot SDK toolchain (the OT-2): the SDK `invoke sdk.pull` installed in the cache.

The SDK's `environment-setup` is sourced ONCE, in a non-interactive `bash -c`, and the
environment it produces is captured as data (`env -0`); no shell is kept open. From it come
the SDK's tool prefix and PATH. The build Python is the SDK's own host python3 (same
CPython version as the target); the target sysconfigdata comes from the SDK's sysroot.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import crossenv, sdk
from ..errors import ToolchainError
from ..paths import Layout
from ..targets import Target, TargetSdk
from .base import Toolchain

_SONAME = re.compile(r"^(lib[^/]*|ld-[^/]*)\.so(\.\d+)*$")


def capture_environment(script: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables `source script` sets or changes in bash, as a dict (sourced once)."""
    base = dict(os.environ if base is None else base)
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", 'source "$1" >&2 && env -0', "bash", str(script)],
        env=base, capture_output=True, timeout=120,
    )
    if result.returncode != 0:
        raise ToolchainError(
            f"sourcing {script} failed (exit {result.returncode}):\n"
            + result.stderr.decode(errors="replace")[-2000:]
            + "\n  reinstall the SDK with `invoke sdk.pull`"
        )
    env: dict[str, str] = {}
    for item in result.stdout.split(b"\0"):
        if b"=" in item:
            key, _, value = item.decode(errors="surrogateescape").partition("=")
            env[key] = value
    ignore = {"_", "SHLVL", "PWD", "OLDPWD"}
    return {k: v for k, v in env.items() if k not in ignore and base.get(k) != v}


class BuildrootToolchain(Toolchain):
    """A relocated Buildroot SDK: its sysroot, its cross tools, its host python3."""

    def __init__(self, target: Target, layout: Layout, extra_packages: tuple[str, ...] = ()) -> None:
        self.target = target
        self.layout = layout
        self.sdk_name = (target.sdk or TargetSdk()).name
        # A Buildroot SDK's sysroot is fixed: recipe target-libs (Debian package names) cannot
        # be added to it. What the robot lacks, the wheel gate reports as a missing library.
        self.extra_packages = tuple(extra_packages)
        self._sdk: sdk.InstalledSdk | None = None
        self._env: dict[str, str] | None = None
        self._system_libs: set[str] | None = None

    # -- the interface --------------------------------------------------------------------
    def ensure(self, refresh: bool = False) -> None:
        """Find the installed SDK (`refresh` re-reads it from the cache). Pulling is explicit:
        `invoke sdk.pull` downloads hundreds of MB and needs a pinned hash."""
        if self._sdk is not None and not refresh:
            return
        installed = sdk.require_installed(self.layout, self.sdk_name)
        if installed.manifest.get("python") != self.target.python:
            raise ToolchainError(
                f"target {self.target.name} needs CPython {self.target.python}, but the "
                f"installed {self.sdk_name!r} SDK ({installed.root}) is for "
                f"{installed.manifest.get('python')}; pull the matching SDK with `invoke sdk.pull`"
            )
        if not installed.sysroot.is_dir():
            raise ToolchainError(f"{installed.sysroot}: SDK sysroot missing; run `invoke sdk.pull` again")
        self._sdk = installed
        self._env = capture_environment(installed.environment_setup)
        self._prepare_sysconfig()

    @property
    def installed_sdk(self) -> sdk.InstalledSdk:
        self.ensure()
        assert self._sdk is not None
        return self._sdk

    @property
    def sdk_environment(self) -> dict[str, str]:
        """What `environment-setup` sets (captured once, as data)."""
        self.ensure()
        assert self._env is not None
        return self._env

    @property
    def sysroot(self) -> Path:
        return self.installed_sdk.sysroot

    @property
    def digest(self) -> str:
        s = self.installed_sdk
        key = {"provider": "buildroot-sdk", "sdk": s.name, "sdk_sha256": s.sha256,
               "target": self.target.name, "python": self.target.python,
               "glibc": self.target.glibc_str, "platform": self.target.platform}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def build_python(self) -> Path:
        python = self.installed_sdk.host_python
        try:
            out = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=60)
        except OSError as exc:
            raise ToolchainError(f"{python}: cannot run the SDK's host python3 ({exc})") from None
        if out.returncode != 0 or out.stdout.strip() != self.target.python:
            raise ToolchainError(
                f"{python}: the SDK's host python3 is {out.stdout.strip() or 'broken'}, target "
                f"{self.target.name} needs {self.target.python}; the SDK does not match the target"
            )
        return python

    @property
    def library_dirs(self) -> list[Path]:
        """Buildroot's sysroot uses lib/ and usr/lib; a multiarch one (Debian-made) has more."""
        root = self.sysroot
        multiarch = sorted(d.relative_to(root) for pat in ("lib/*-linux-gnu*", "usr/lib/*-linux-gnu*")
                           for d in root.glob(pat) if d.is_dir())
        return [root / d for d in (*multiarch, Path("lib"), Path("usr/lib"))]

    def system_libs(self) -> set[str]:
        """Sonames in the SDK sysroot's library directories: what the robot itself has."""
        if self._system_libs is None:
            found: set[str] = set()
            for d in self.library_dirs:
                if d.is_dir():
                    found |= {p.name for p in d.iterdir() if _SONAME.match(p.name)}
            self._system_libs = found
        return self._system_libs

    def tool(self, name: str) -> str:
        """Absolute path of the SDK's `<prefix>name` (prefix from CROSS_COMPILE)."""
        prefix = self.sdk_environment.get("CROSS_COMPILE") or f"{self.target.triplet}-"
        path = self.sdk_environment.get("PATH", "")
        found = shutil.which(prefix + name, path=path) or shutil.which(
            prefix + name, path=str(self.installed_sdk.root / "bin"))
        if found is None:
            raise ToolchainError(f"the SDK at {self.installed_sdk.root} has no {prefix}{name}")
        return found

    def compilers(self) -> dict[str, str]:
        s = self.sysroot
        return {
            "CC": f"{self.tool('gcc')} --sysroot={s}",
            "CXX": f"{self.tool('g++')} --sysroot={s}",
            "AR": self.tool("ar"),
            "RANLIB": self.tool("ranlib"),
            "STRIP": self.tool("strip"),
            "READELF": self.tool("readelf"),
        }

    def env(self) -> dict[str, str]:
        env = super().env()
        # the SDK's bin first (pkg-config, host tools), as environment-setup arranges it
        sdk_path = self.sdk_environment.get("PATH")
        if sdk_path:
            env["PATH"] = sdk_path
        env["CROSS_COMPILE"] = self.sdk_environment.get("CROSS_COMPILE", f"{self.target.triplet}-")
        return env

    def describe(self) -> dict[str, str]:
        s = self.installed_sdk
        return {"provider": "buildroot-sdk", "sdk": str(s.root), "sdk_sha256": s.sha256,
                "sysroot": str(s.sysroot), "build_python": str(self.build_python())}

    # -- setup ----------------------------------------------------------------------------
    def _prepare_sysconfig(self) -> None:
        """The target's sysconfigdata with paths moved into the sysroot (written once)."""
        dest = self.sysconfig_dir()
        if any(dest.glob("_sysconfigdata_*.py")):
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".sysconfig.", dir=dest.parent))
        try:
            crossenv.write_sysconfigdata(self.sysroot, self.target.python, tmp, self.target.architecture.multiarch)
            try:
                tmp.rename(dest)
            except OSError:
                if not any(dest.glob("_sysconfigdata_*.py")):
                    raise
                shutil.rmtree(tmp)  # a concurrent run wrote it first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
