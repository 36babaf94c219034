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
