"""Invoke tasks: toolchains, SDK, Docker images, the index, the CI matrix. Thin by design.

    invoke toolchain.setup --target bookworm-armhf
    invoke toolchain.info
"""

from __future__ import annotations

import sys
from functools import wraps
from pathlib import Path

from invoke import Collection, Exit, task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # run from this checkout whether installed or not

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
        print(f"{t.name}: sysroot {tc.sysroot}\n  digest {tc.digest}\n  build python {tc.build_python()}")


@task(iterable=["target"])
@friendly
def toolchain_info(c, target=None):
    """Show each target's settings and whether its toolchain is ready."""
    from ot2wheels.pipeline import Project

    project = Project.load()
    for t in project.targets.select(target or list(project.targets.targets)):
        print(f"{t.name}: CPython {t.python} ({t.cp}), {t.platform}, glibc {t.glibc_str}, "
              f"{t.triplet}, provider {t.provider}\n  {t.description}")


toolchain = Collection("toolchain")
toolchain.add_task(toolchain_setup, "setup")
toolchain.add_task(toolchain_info, "info")

ns = Collection()
ns.add_collection(toolchain)


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
