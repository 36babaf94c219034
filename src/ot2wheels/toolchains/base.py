"""The one interface every toolchain provider implements."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from .. import crossenv, hostpython
from ..errors import Ot2WheelsError
from ..fsutil import scrubbed_env
from ..paths import Layout
from ..targets import Target

if TYPE_CHECKING:
    from .buildpython import BuildPython


class Toolchain(ABC):
    """A cross compiler, a target sysroot with the target's CPython, and a way to run it."""

    target: Target

    @abstractmethod
    def __init__(self, target: Target, layout: Layout, extra_packages: tuple[str, ...] = ()) -> None:
        """Every provider is made the same way (see `toolchains.PROVIDERS`); nothing is fetched yet."""

    @abstractmethod
    def ensure(self, refresh: bool = False) -> None:
        """Make the toolchain ready. Idempotent; an interrupted run leaves nothing half-made.

        `refresh` re-reads upstream state (package lists, SDK pin) instead of the cached one.
        """

    @property
    @abstractmethod
    def sysroot(self) -> Path: ...

    @property
    @abstractmethod
    def digest(self) -> str:
        """Identifies exactly what the toolchain is made of (part of every build's cache key)."""

    @abstractmethod
    def build_python(self) -> Path:
        """A host CPython of the target's major.minor, used to run the build backend."""

    def build_python_info(self) -> BuildPython:
        """The build Python and where it came from (a provider that acquires one says more)."""
        from .buildpython import BuildPython, Origin

        python = self.build_python()
        return BuildPython(python, hostpython.full_version(python) or self.target.python, Origin.TOOLCHAIN,
                           f"the {self.target.provider} toolchain's own")

    def build_python_status(self) -> str:
        """Which build Python is used and where it came from, without acquiring anything."""
        try:
            return self.build_python_info().describe()
        except Ot2WheelsError as exc:
            return f"not ready: {exc}"

    @property
    def target_python(self) -> Path:
        """The target's CPython inside the sysroot (run it with `run_target`)."""
        return self.sysroot / "usr" / "bin" / f"python{self.target.python}"

    @property
    def library_dirs(self) -> list[Path]:
        """Directories of the sysroot the dynamic linker searches, most specific first."""
        t = self.target.architecture.multiarch  # Debian's lib/<multiarch>, not the compiler's triplet
        return [self.sysroot / d for d in (f"lib/{t}", f"usr/lib/{t}", "lib", "usr/lib")]

    def package_version(self, name: str) -> str | None:
        """The version of package `name` in the sysroot, when the provider knows it (else None)."""
        return None

    @abstractmethod
    def system_libs(self) -> set[str]:
        """Sonames the target itself provides: a wheel may need these without vendoring them."""

    @abstractmethod
    def compilers(self) -> dict[str, str]:
        """CC, CXX, AR, STRIP, ... as the cross build should call them (with --sysroot)."""

    def cxx_runtime_flags(self) -> list[str]:
        """Flags every C++ compile needs for the target's own libstdc++ (none: the compiler's)."""
        return []

    def env(self) -> dict[str, str]:
        """Variables that turn a host build of CPython X.Y into a cross build for the target."""
        return crossenv.cross_environment(self)

    def sysconfig_dir(self) -> Path:
        """Where the path-rewritten copy of the target's sysconfigdata lives."""
        return self.sysroot / ".ot2wheels" / "sysconfig"

    def qemu_command(self) -> list[str]:
        return [self.target.architecture.qemu, "-L", str(self.sysroot)]

    def run_target(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float | None = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run a target program (e.g. `[str(self.target_python), "-c", ...]`) under qemu-user."""
        return subprocess.run(
            [*self.qemu_command(), *argv],
            env={**scrubbed_env(("PYTHON", "_PYTHON")), **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
