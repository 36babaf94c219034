"""Docker builder images, for real: a dockerd is started when none answers.

The first run makes the base image with debootstrap (a few minutes); the engine's data lives
in the ot2wheels cache (test-dockerd/), so later runs find the images and only check digests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename
from sdk_standin import TRIPLET, debian_standin, standin_project

from ot2wheels import docker_images as di
from ot2wheels import hosttools, sdk
from ot2wheels.errors import DockerError, ToolchainError
from ot2wheels.paths import Layout, default_cache_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine():
    """A docker client: the running engine, else a private dockerd started (and stopped) here."""
    try:
        yield di.client()
        return
    except DockerError as exc:
        first = str(exc).splitlines()[0]
    if os.geteuid() != 0:
        pytest.skip(f"{first}; and none can be started here (not root)")
    try:
        hosttools.ensure([hosttools.HostTool("dockerd", "docker.io")])
    except ToolchainError as exc:
        pytest.skip(f"{first}; and no dockerd could be installed: {exc}")
    run = Path(tempfile.mkdtemp(prefix="ot2w-dockerd-"))  # short: unix socket paths are limited
    data = default_cache_dir() / "test-dockerd"
    data.mkdir(parents=True, exist_ok=True)
    log = (run / "dockerd.log").open("w")
    proc = subprocess.Popen(
        ["dockerd", "--host", f"unix://{run}/docker.sock", "--data-root", str(data),
         "--exec-root", str(run / "exec"), "--pidfile", str(run / "dockerd.pid"),
         "--bridge", "none", "--iptables=false"],  # builds and runs use the host network
        stdout=log, stderr=subprocess.STDOUT)
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = f"unix://{run}/docker.sock"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c = di.client()
                break
            except DockerError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("dockerd could not be started here:\n"
                                + (run / "dockerd.log").read_text()[-1500:])
                time.sleep(0.5)
        yield c
    finally:
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        netns = run / "exec" / "netns" / "default"  # dockerd leaves its netns bind-mounted
        if os.path.ismount(netns) or netns.exists():
            subprocess.run(["umount", str(netns)], capture_output=True)
        shutil.rmtree(run, ignore_errors=True)


def _copy_tool(dest: Path) -> Layout:
    for rel in ("pyproject.toml", "toolchain/Dockerfile", "toolchain/targets.toml"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, dest / rel)
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return Layout.discover(root=dest, cache=dest / "cache")


def test_digest_tracks_every_input(tmp_path):
    layout = _copy_tool(tmp_path)
    base = di.BaseSpec("bookworm", di.BASE_PACKAGES, "http://127.0.0.1/debian")
    d1 = di.builder_digest(layout, base, "apt\n")
    assert d1 == di.builder_digest(layout, base, "apt\n")  # unchanged inputs: same tag
    assert di.builder_tag(d1) == f"ot2wheels-builder:{d1[:16]}"
    (layout.root / "src/ot2wheels/paths.py").write_text("# changed\n")
    d2 = di.builder_digest(layout, base, "apt\n")
    (layout.root / "toolchain/Dockerfile").write_text("FROM x\n")
    d3 = di.builder_digest(layout, base, "apt\n")
    other = di.BaseSpec("bookworm", (*di.BASE_PACKAGES, "git"), base.mirror)
    d4 = di.builder_digest(layout, other, "apt\n")
    assert len({d1, d2, d3, d4, di.builder_digest(layout, base, "other apt\n")}) == 5
    assert other.tag != base.tag and base.tag.startswith("ot2wheels-base:bookworm-")


def test_image_has_rust_and_the_crates_cryptography_builds_from():
    """The image builds Rust recipes (cryptography) as the host does after ./bootstrap: Debian's
    rustc-web/cargo-web with their std, and every crate source package bootstrap installs for
    them (the offline path, docs/rust.md), except the two only the registry tests serve."""
    packages = set(di.BASE_APT_PACKAGES)
    assert {"rustc-web", "cargo-web", "libstd-rust-web-dev", "librust-pyo3-dev"} <= packages
    # apt-get installs them, not debootstrap (whose resolver stops at virtual packages)
    assert not packages & set(di.BASE_PACKAGES)
    assert di.default_base("http://127.0.0.1/debian").apt_packages == di.BASE_APT_PACKAGES
    bootstrap = (REPO / "bootstrap").read_text()
    crates = set(re.findall(r"\blibrust-[a-z0-9-]+-dev\b", bootstrap)) - {"librust-scopeguard-dev",
                                                                       "librust-autocfg-dev"}
    assert {"librust-asn1-dev", "librust-pem-dev", "librust-pyo3-dev"} <= crates
    assert crates <= packages, sorted(crates - packages)
    # the armhf/arm64 std is not in the image: it is fetched at build time, for the host's release
    assert not any(p.endswith(":armhf") for p in packages | set(di.BASE_PACKAGES))


def test_container_pip_conf_has_no_host_paths():
    conf = di.container_pip_conf()
    assert conf.startswith("[global]\n") and "file:" not in conf
    assert "find-links" not in conf and "constraint" not in conf


def test_cli_without_engine_says_so(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    r = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "docker.build"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"no Docker engine answers at unix://{tmp_path}/no.sock" in r.stderr
    assert "dockerd" in r.stderr


@pytest.fixture(scope="module")
def image(engine) -> di.ImageBuild:
    return di.build_image(Layout.discover(root=REPO), engine)


@pytest.mark.integration
@pytest.mark.slow
def test_image_is_reused_when_inputs_are_unchanged(engine, image):
    again = di.build_image(Layout.discover(root=REPO), engine)
    assert not again.built and again.tag == image.tag and again.base_built is False
    assert engine.images.get(image.tag).labels["ot2wheels.digest"] == image.digest
    r = subprocess.run([sys.executable, "-m", "invoke", "docker.build"], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"{image.tag} (already up to date" in r.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_outputs_belong_to_the_calling_user(engine, image, tmp_path, project_root):
    project = project_root
    project.chmod(0o777)
    layout = Layout.discover(root=project, cache=tmp_path / "cache")
    code, out = di.run_in_image(layout, ["sh", "-c", "id -u; id -g; touch made-by-container"],
                                image=image.tag, user="1234:4321", echo=False)
    assert code == 0 and out.split() == ["1234", "4321"]
    st = (project / "made-by-container").stat()
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    code, out = di.run_in_image(layout, ["sh", "-c", "id -u; id -g"], image=image.tag, echo=False)
    assert code == 0 and out.split() == [str(os.getuid()), str(os.getgid())]
    code, _ = di.run_in_image(layout, ["sh", "-c", "exit 3"], image=image.tag, echo=False)
    assert code == 3


@pytest.mark.integration
@pytest.mark.slow
def test_wheel_built_and_smoke_tested_inside_the_image(engine, image, project_root):
    """nox inside the image: cross-build markupsafe for bookworm-armhf and qemu-smoke-test it."""
    project = project_root
    shutil.copytree(REPO / "packages/markupsafe", project / "packages/markupsafe")
    (project / "noxfile.py").symlink_to(REPO / "noxfile.py")
    layout = Layout.discover(root=project)  # the shared cache: its sysroots are reused
    for argv in (["nox", "-s", "build-markupsafe", "--", "--target", "bookworm-armhf"],
                 ["nox", "-s", "test-arm", "--", "--target", "bookworm-armhf", "markupsafe"]):
        code, out = di.run_in_image(layout, argv, image=image.tag, echo=False, extra_mounts={REPO: "ro"})
        assert code == 0, out[-4000:]
    assert "smoke PASSED" in out
    (wheel,) = (project / "dist/bookworm-armhf/markupsafe").glob("*.whl")
    _, _, _, tags = parse_wheel_filename(wheel.name)
    assert {str(t) for t in tags} == {"cp311-cp311-linux_armv7l"}
    assert wheel.stat().st_uid == os.getuid()


@pytest.mark.integration
@pytest.mark.slow
def test_ot2_shaped_sdk_build_inside_the_image(engine, image, tmp_path_factory, tmp_path):
    """The OT-2 path in Docker: an SDK pulled into the cache on the host (at its own path),
    then nox in the container cross-builds with it and smoke-tests under qemu-arm."""
    standin = debian_standin(REPO, tmp_path_factory.getbasetemp() / "standin")
    project = standin_project(tmp_path / "project", "ot2-standin", standin, standin.sha256)
    shutil.copytree(REPO / "packages/markupsafe", project / "packages/markupsafe")
    (project / "noxfile.py").symlink_to(REPO / "noxfile.py")
    layout = Layout.discover(root=project, cache=tmp_path / "cache")
    installed = sdk.pull(layout, file=standin.tarball, progress=False, log=lambda *_: None)
    for argv in (["nox", "-s", "build-markupsafe", "--", "--target", "ot2-standin"],
                 ["nox", "-s", "test-arm", "--", "--target", "ot2-standin", "markupsafe"]):
        code, out = di.run_in_image(layout, argv, image=image.tag, echo=False, extra_mounts={REPO: "ro"})
        assert code == 0, out[-4000:]
    assert "smoke PASSED" in out
    pdir = project / "dist/ot2-standin/markupsafe"
    (wheel,) = pdir.glob("*.whl")
    _, _, _, tags = parse_wheel_filename(wheel.name)
    cp = "cp" + standin.python.replace(".", "")
    assert {str(t) for t in tags} == {f"{cp}-{cp}-linux_armv7l"}
    log = next(pdir.glob("*.log")).read_text()
    # ccache outside, the host guard of the SDK's own gcc inside (hostguard.py)
    assert re.search(rf"CC=ccache \S*/hostguard/{TRIPLET}-gcc --sysroot={re.escape(str(installed.sysroot))}", log), log[:2000]
