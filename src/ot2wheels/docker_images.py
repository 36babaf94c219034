"""Docker builder images: the cross toolchain + ot2wheels, built without any registry.

- The base image is made locally: `debootstrap` a minimal Debian rootfs (from the mirror the
  host's apt already uses) with the cross compilers, qemu-user and python3, then
  `docker import` it. Its tag is a digest of (suite, packages, mirror).
- The builder image (`toolchain/Dockerfile`) adds ot2wheels and its dependencies as wheels
  fetched on the host with the host's pip configuration. Its tag is a digest of everything
  that goes into it (base, Dockerfile, the tool's sources, pyproject.toml), so an unchanged
  toolchain is never rebuilt.
- `run_in_image` runs any ot2wheels command in the image with the checkout and the cache
  bind-mounted at their own paths and the calling user's uid:gid, so outputs belong to
  the caller.
All engine access goes through the docker Python SDK.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import aptsource, rust
from .errors import DockerError
from .fsutil import atomic_write
from .paths import Layout
from .targets import ARCHES

IMAGE_REPO = "ot2wheels-builder"
BASE_REPO = "ot2wheels-base"
BASE_SUITE = "bookworm"
BASE_PYTHON = "3.11"  # bookworm's python3: the tool's wheels are fetched for this version
BASE_PACKAGES = (
    "python3", "python3-venv", "python3-pip", "python3-setuptools", "python3-wheel",
    "gcc-arm-linux-gnueabihf", "g++-arm-linux-gnueabihf",
    "gcc-aarch64-linux-gnu", "g++-aarch64-linux-gnu", "qemu-user", "patchelf",
    "ca-certificates", "debian-archive-keyring", "file", "ccache",
)
# Installed by apt-get inside the new rootfs after debootstrap: debootstrap's own resolver does not
# follow virtual packages (librust-serde-1+default-dev), which the crate packages depend on.
# Rust extensions (cryptography): bookworm's rustc-web/cargo-web 1.85, its std, and the crate
# sources the offline path builds from (the armhf std is fetched at build time: docs/rust.md).
BASE_APT_PACKAGES = (*rust.HOST_PACKAGES, *rust.CRATE_PACKAGES)
# Trimmed from the rootfs before import: never needed to build or test wheels.
_ROOTFS_PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                 "var/cache/apt/archives", "var/lib/apt/lists", "var/cache/debconf/templates.dat-old")
# qemu-user ships ~35 emulators (150 MB); only those of the target architectures are used.
_KEEP_QEMU = tuple(sorted(a.qemu for a in ARCHES.values()))
_APT_KEYS = ("Acquire::Check-Valid-Until", "Acquire::Check-Date", "Acquire::http::Proxy",
             "Acquire::https::Proxy")
_PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout", "retries")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

Log = Callable[[str], None]


# -- the engine ----------------------------------------------------------------------------
def engine_address() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def client(timeout: int = 600) -> Any:
    """A docker SDK client for an engine that answers, or a DockerError saying what to do."""
    import docker
    from docker.errors import DockerException

    try:
        c = docker.from_env(timeout=timeout)
        c.ping()
        return c
    except DockerException as exc:
        raise DockerError(
            f"no Docker engine answers at {engine_address()} ({exc}).\n"
            "  Start one (`sudo systemctl start docker`, or `sudo dockerd &`; on Debian "
            "`apt-get install docker.io` provides it), or point DOCKER_HOST at a running engine."
        ) from None


def image_exists(c: Any, ref: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        c.images.get(ref)
        return True
    except ImageNotFound:
        return False


# -- the base image ------------------------------------------------------------------------
@dataclass(frozen=True)
class BaseSpec:
    suite: str
    packages: tuple[str, ...]
    mirror: str
    variant: str = "minbase"
    apt_packages: tuple[str, ...] = ()  # apt-get installs them after debootstrap

    @property
    def digest(self) -> str:
        body = json.dumps([self.suite, sorted(self.packages), self.mirror.rstrip("/"), self.variant,
                           _ROOTFS_PRUNE, _KEEP_QEMU, *([sorted(self.apt_packages)] if self.apt_packages else [])])
        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def tag(self) -> str:
        return f"{BASE_REPO}:{self.suite}-{self.digest[:16]}"


def default_base(mirror: str | None = None) -> BaseSpec:
    return BaseSpec(BASE_SUITE, BASE_PACKAGES, mirror or aptsource.debian_mirror(), apt_packages=BASE_APT_PACKAGES)


def ensure_base(c: Any, spec: BaseSpec, workdir: Path, log: Log = print) -> bool:
    """Make the base image unless it exists. Returns True when it was built now."""
    if image_exists(c, spec.tag):
        return False
    if os.geteuid() != 0:
        raise DockerError(f"making the base image {spec.tag} runs debootstrap, which needs root; "
                          "run `invoke docker.build` as root once (or with sudo)")
    from . import hosttools
    from .errors import ToolchainError

    try:
        hosttools.ensure([hosttools.HostTool("debootstrap", "debootstrap")], log=log)
    except ToolchainError as exc:
        raise DockerError(f"making the base image needs debootstrap: {exc}") from None
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="base.", dir=workdir))
    try:
        rootfs = tmp / "rootfs"
        log(f"debootstrap {spec.suite} ({spec.variant}, {len(spec.packages)} extra packages) ...")
        result = subprocess.run(
            ["debootstrap", f"--variant={spec.variant}", "--components=main",
             f"--include={','.join(spec.packages)}", spec.suite, str(rootfs), spec.mirror],
            capture_output=True, text=True, timeout=1800,
        )
        if result.returncode != 0:
            log_file = rootfs / "debootstrap" / "debootstrap.log"
            detail = log_file.read_text()[-2000:] if log_file.is_file() else ""
            raise DockerError(
                f"debootstrap {spec.suite} from {spec.mirror} failed (exit {result.returncode}):\n"
                + (result.stderr or result.stdout)[-2000:] + detail
                + "\n  check the host's apt sources and network, then run again"
            )
        if spec.apt_packages:
            _apt_install(rootfs, spec, log)
        for rel in _ROOTFS_PRUNE:
            target = rootfs / rel
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        for emulator in (rootfs / "usr/bin").glob("qemu-*"):
            if emulator.name not in _KEEP_QEMU:
                emulator.unlink()
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tarball = tmp / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."],
                       check=True, capture_output=True)
        log(f"docker import -> {spec.tag} ({tarball.stat().st_size / 1e6:.0f} MB)")
        repo, tag = spec.tag.split(":")
        c.api.import_image_from_file(str(tarball), repository=repo, tag=tag,
                                     changes=['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
                                              'CMD ["/bin/bash"]'])
        if not image_exists(c, spec.tag):
            raise DockerError(f"docker import of {tarball} did not produce {spec.tag}")
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _apt_install(rootfs: Path, spec: BaseSpec, log: Log) -> None:
    """apt-get install `spec.apt_packages` inside the fresh rootfs (its sources: the mirror)."""
    log(f"apt-get install {len(spec.apt_packages)} packages in the new rootfs ...")
    shutil.copy2("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    for argv in (["apt-get", "update"],
                 ["apt-get", "install", "-y", "--no-install-recommends", *spec.apt_packages],
                 ["apt-get", "clean"]):
        result = subprocess.run(["chroot", str(rootfs), *argv], capture_output=True, text=True, env=env,
                                timeout=1800)
        if result.returncode != 0:
            errors = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("E: ")]
            raise DockerError(f"{' '.join(argv[:2])} in the base rootfs ({spec.suite} from {spec.mirror}) failed "
                              f"(exit {result.returncode}): {errors[-1] if errors else ''}\n"
                              + (result.stderr or result.stdout)[-2000:]
                              + "\n  check the host's apt sources and network, then run again")


# -- the builder image ---------------------------------------------------------------------
def apt_host_conf() -> str:
    """The host's apt Acquire settings that matter for reaching its mirror from the image."""
    try:
        dump = subprocess.run(["apt-config", "dump"], capture_output=True, text=True).stdout
    except OSError:
        dump = ""
    lines = [line for line in dump.splitlines() if line.split(" ", 1)[0] in _APT_KEYS]
    return "// copied from the host's apt configuration by ot2wheels\n" + "\n".join(lines) + "\n"


def _source_files(root: Path) -> Iterable[Path]:
    yield root / "pyproject.toml"
    for p in sorted((root / "src").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".egg-info")) \
                and not any(part.endswith(".egg-info") for part in p.parts):
            yield p


def builder_digest(layout: Layout, base: BaseSpec, apt_conf: str) -> str:
    """Digest of everything that goes into the builder image."""
    h = hashlib.sha256()
    dockerfile = layout.dockerfile
    for name, data in [("base", base.tag.encode()), ("Dockerfile", dockerfile.read_bytes()),
                       ("apt-host.conf", apt_conf.encode()),
                       *((str(p.relative_to(layout.root)), p.read_bytes()) for p in _source_files(layout.root))]:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class ImageBuild:
    tag: str
    digest: str
    built: bool  # False: an image with this digest existed already
    base_tag: str
    base_built: bool


def builder_tag(digest: str) -> str:
    return f"{IMAGE_REPO}:{digest[:16]}"


def build_image(layout: Layout, c: Any | None = None, base: BaseSpec | None = None,
                force: bool = False, log: Log = print) -> ImageBuild:
    """Build the builder image unless one with the same input digest exists."""
    c = c or client()
    base = base or default_base()
    work = layout.cache / "docker"
    base_built = ensure_base(c, base, work, log)
    apt_conf = apt_host_conf()
    digest = builder_digest(layout, base, apt_conf)
    tag = builder_tag(digest)
    if image_exists(c, tag) and not force:
        log(f"{tag} is up to date")
        c.images.get(tag).tag(IMAGE_REPO, "latest")
        return ImageBuild(tag, digest, False, base.tag, base_built)
    work.mkdir(parents=True, exist_ok=True)
    ctx = Path(tempfile.mkdtemp(prefix="context.", dir=work))
    try:
        shutil.copy(layout.dockerfile, ctx / "Dockerfile")
        (ctx / "apt-host.conf").write_text(apt_conf)
        _fetch_wheels(layout.root, ctx / "wheels", log)
        log(f"docker build -> {tag}")
        from docker.errors import APIError, BuildError

        try:
            image, _logs = c.images.build(
                path=str(ctx), dockerfile="Dockerfile", tag=tag, rm=True, forcerm=True,
                buildargs={"BASE_IMAGE": base.tag}, network_mode="host",
                labels={"ot2wheels.digest": digest, "ot2wheels.base": base.tag},
            )
        except BuildError as exc:
            tail = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
            raise DockerError(f"docker build of {tag} failed: {exc.msg}\n{tail[-3000:]}") from None
        except APIError as exc:
            raise DockerError(f"docker build of {tag} failed: {exc}") from None
        image.tag(IMAGE_REPO, "latest")
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return ImageBuild(tag, digest, True, base.tag, base_built)


def _fetch_wheels(root: Path, dest: Path, log: Log) -> None:
    """ot2wheels and its dependencies as wheels, with the host's pip and pip configuration."""
    from .hostpython import find_python

    # our own interpreter when it is the image's X.Y: it has pip (a system python3.11 may not)
    here = "{}.{}".format(*sys.version_info[:2])
    python = Path(sys.executable) if here == BASE_PYTHON else find_python(BASE_PYTHON)
    log(f"collecting ot2wheels and its dependencies as wheels ({python}) ...")
    result = subprocess.run([str(python), "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), str(root)],
                            capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise DockerError(f"pip wheel of {root} failed:\n{result.stderr[-3000:]}\n"
                          "  check the package index settings of the host's pip (pip config list)")


# -- running a build inside the image ------------------------------------------------------
def container_pip_conf() -> str:
    """The host's pip settings that make sense inside the image (no host-local paths)."""
    result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    keep: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".", 1)[-1]
        value = value.strip().strip("'\"")
        if name not in _PIP_KEYS:
            continue
        if name == "extra-index-url":
            value = " ".join(u for u in value.split() if not u.startswith("file:"))
            if not value:
                continue
        keep[name] = value
    body = "".join(f"{k} = {v}\n" for k, v in sorted(keep.items()))
    return "[global]\n" + body + (f"cert = {CA_BUNDLE}\n" if CA_BUNDLE.is_file() else "")


def run_in_image(layout: Layout, argv: list[str], image: str | None = None, c: Any | None = None,
                 log: Log = print, user: str | None = None, echo: bool = True,
                 extra_mounts: dict[Path, str] | None = None) -> tuple[int, str]:
    """Run `argv` in the builder image as the calling user. Returns (exit code, output).

    The checkout and the cache are bind-mounted at their own paths (an SDK relocated into
    the cache keeps working), the host's CA bundle read-only, the host network is used.
    `extra_mounts` adds {host path: "ro"|"rw"} mounts, each at its own path.
    """
    c = c or client()
    if image is None:
        image = build_image(layout, c, log=log).tag
    elif not image_exists(c, image):
        raise DockerError(f"no image {image!r} on the engine; run `invoke docker.build` (or docker.pull)")
    work = layout.cache / "docker"
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    pip_conf = work / "pip.conf"
    atomic_write(pip_conf, container_pip_conf())  # shared by concurrent containers
    volumes = {str(layout.root): {"bind": str(layout.root), "mode": "rw"},
               str(layout.cache): {"bind": str(layout.cache), "mode": "rw"}}
    if not layout.dist.resolve().is_relative_to(layout.root.resolve()):
        layout.dist.mkdir(parents=True, exist_ok=True)
        volumes[str(layout.dist)] = {"bind": str(layout.dist), "mode": "rw"}
    for path, mode in (extra_mounts or {}).items():
        volumes[str(path)] = {"bind": str(path), "mode": mode}
    if CA_BUNDLE.is_file():
        volumes[str(CA_BUNDLE)] = {"bind": str(CA_BUNDLE), "mode": "ro"}
    env = {
        "OT2WHEELS_CACHE": str(layout.cache),
        "HOME": str(home),
        "PIP_CONFIG_FILE": str(pip_conf),
        "PIP_CACHE_DIR": str(work / "pip-cache"),
        "SSL_CERT_FILE": str(CA_BUNDLE),
        "REQUESTS_CA_BUNDLE": str(CA_BUNDLE),
        "PIP_CERT": str(CA_BUNDLE),
        "OT2WHEELS_IN_DOCKER": image,
    }
    user = user or f"{os.getuid()}:{os.getgid()}"
    from docker.errors import APIError

    try:
        container = c.containers.run(image, command=argv, user=user, working_dir=str(layout.root),
                                     volumes=volumes, environment=env, network_mode="host",
                                     detach=True)
    except APIError as exc:
        raise DockerError(f"cannot start a container from {image}: {exc}") from None
    chunks: list[str] = []
    try:
        for chunk in container.logs(stream=True, follow=True):
            text = chunk.decode(errors="replace")
            chunks.append(text)
            if echo:
                sys.stdout.write(text)
                sys.stdout.flush()
        status = container.wait()
    finally:
        with contextlib.suppress(APIError):
            container.remove(force=True)
    return int(status.get("StatusCode", 1)), "".join(chunks)


# -- registries ----------------------------------------------------------------------------
def _stream_errors(lines: Iterable[Any]) -> str | None:
    for line in lines:
        if isinstance(line, dict) and line.get("error"):
            return str(line["error"])
    return None


def push_image(registry: str, tag: str | None = None, c: Any | None = None) -> str:
    """Tag the local builder image as REGISTRY/ot2wheels-builder:TAG and push it."""
    from docker.errors import APIError, ImageNotFound

    c = c or client()
    local = tag or f"{IMAGE_REPO}:latest"
    try:
        image = c.images.get(local)
    except ImageNotFound:
        raise DockerError(f"no local image {local}; run `invoke docker.build` first") from None
    name = local.split(":", 1)[1] if ":" in local else "latest"
    remote = f"{registry.rstrip('/')}/{IMAGE_REPO}"
    image.tag(remote, name)
    try:
        error = _stream_errors(c.images.push(remote, tag=name, stream=True, decode=True))
    except APIError as exc:
        error = str(exc)
    if error:
        raise DockerError(f"push of {remote}:{name} failed: {error}\n"
                          "  check the registry address and that you are logged in (docker login)")
    return f"{remote}:{name}"


def pull_image(ref: str, c: Any | None = None) -> str:
    """Pull REGISTRY/ot2wheels-builder:TAG and tag it locally as ot2wheels-builder:TAG."""
    from docker.errors import APIError

    c = c or client()
    repo, _, name = ref.rpartition(":")
    if not repo or "/" in name:
        repo, name = ref, "latest"
    try:
        image = c.images.pull(repo, tag=name)
    except APIError as exc:
        raise DockerError(f"pull of {repo}:{name} failed: {exc}\n"
                          "  check the registry address and your access; without a registry, "
                          "build the image here with `invoke docker.build`") from None
    image.tag(IMAGE_REPO, name)
    return f"{IMAGE_REPO}:{name}"
