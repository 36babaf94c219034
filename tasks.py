"""Invoke tasks: thin wrappers that parse arguments, call ot2wheels, and turn errors into exit 1.

Each namespace lives in its own delimited block so parallel work merges cleanly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from invoke import Collection, Exit, task

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from ot2wheels.errors import Ot2WheelsError  # noqa: E402
from ot2wheels.paths import Layout  # noqa: E402

ns = Collection()


def _cli(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a task body; an Ot2WheelsError becomes its message and exit status 1."""

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Ot2WheelsError as exc:
            raise Exit(f"error: {exc}", code=1) from None

    return run


# --- sdk ---
@task(help={
    "url": "download the SDK tarball from here instead of the pinned URL (a mirror)",
    "file": "use this SDK tarball you already have instead of downloading",
    "sha256": "expected sha256 of the tarball (overrides the pin in toolchain/sdk.toml)",
    "size": "expected size in bytes (optional)",
    "name": "which [sdk.NAME] of toolchain/sdk.toml (default: ot2)",
    "no_progress": "no progress bar",
})
@_cli
def sdk_pull(c, url=None, file=None, sha256=None, size=None, name="ot2", no_progress=False):
    """Download, verify, unpack, relocate and install the Buildroot SDK into the cache."""
    from ot2wheels import sdk

    sdk.pull(Layout.discover(), name=name, url=url, file=Path(file) if file else None,
             sha256=sha256, size=int(size) if size else None, progress=not no_progress)


@task(help={"name": "which [sdk.NAME] of toolchain/sdk.toml (default: ot2)"})
@_cli
def sdk_info(c, name="ot2"):
    """What SDK is installed, where, and whether it matches the pin."""
    from ot2wheels import sdk

    print("\n".join(sdk.info(Layout.discover(), name=name).lines()))


_sdk = Collection("sdk")
_sdk.add_task(sdk_pull, "pull")
_sdk.add_task(sdk_info, "info")
ns.add_collection(_sdk)
# --- end sdk ---
