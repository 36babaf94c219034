"""Host programs the cross build needs, installed through apt when we may, named when we may not."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from . import locks
from .errors import ToolchainError


@dataclass(frozen=True)
class HostTool:
    program: str  # what must be on PATH
    package: str  # the Debian/Ubuntu package providing it


def cross_tools(triplet: str, qemu: str) -> list[HostTool]:
    """What a Debian-style cross build for `triplet` (run under `qemu`) needs on the host."""
    return [
        HostTool(f"{triplet}-gcc", f"gcc-{triplet}"),
        HostTool(f"{triplet}-g++", f"g++-{triplet}"),
        HostTool(qemu, "qemu-user"),
        HostTool("dpkg-deb", "dpkg"),
        HostTool("apt-get", "apt"),
    ]


def missing(tools: list[HostTool]) -> list[HostTool]:
    return [t for t in tools if shutil.which(t.program) is None]


def ensure(tools: list[HostTool], install: bool = True, log=print) -> None:
    """Install what is missing with apt-get when running as root; otherwise say the command."""
    if not missing(tools):
        return
    with locks.locked(locks.host_lock_path("host-apt"), "the host's apt", log):
        _install(tools, install, log)


def _install(tools: list[HostTool], install: bool, log) -> None:
    absent = missing(tools)  # again: another build may have installed them while we waited
    if not absent:
        return
    packages = sorted({t.package for t in absent})
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    can_install = install and os.geteuid() == 0 and shutil.which("apt-get")
    if not can_install:
        raise ToolchainError(
            "missing host tools: " + ", ".join(t.program for t in absent)
            + f"\n  install them with: sudo {' '.join(command)}"
        )
    log(f"installing host tools: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        # The package lists may be stale or absent on a fresh machine: refresh once and retry.
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    still = missing(absent)
    if result.returncode != 0 or still:
        raise ToolchainError(
            f"could not install {' '.join(packages)} (apt-get exit {result.returncode}):\n"
            + result.stderr[-2000:]
            + f"\n  run by hand: sudo {' '.join(command)}"
        )
