"""The robot closure through the Buildroot SDK: `nox -s build-prefect -- --target <sdk target>`.

As an OT-2 user runs it: a scratch checkout whose targets.toml has a `buildroot-sdk` target and
whose sdk.toml pins the SDK, `invoke sdk.pull` from a URL (here the stand-in SDK, built from
Debian armhf parts and served on 127.0.0.1), then the real nox session, which plans prefect for
the target, builds every must-build that has a recipe with the SDK's compilers (cryptography
through the SDK's Rust path: host rustc, the host release's std for armv7, the SDK sysroot's
libc and OpenSSL), gates and smoke-tests each under qemu-arm, installs the closure with the
target CPython's pip (`--only-binary=:all:`, our wheels pinned) and runs a prefect flow.

The stand-in is bullseye-shaped (CPython 3.9, glibc 2.31), not the robot's 3.10 / 2.25: Debian
has no armhf CPython 3.10 (README "For OT-2 users" says what differs on the real robot).

Warm caches: the stand-in tarball is reproducible (same bytes for the same sysroot), and the
scratch checkout lives in the shared cache (`<cache>/test-projects/sdk-closure/`, its packages/
and toolchain/ rewritten every run, its dist/ kept), so a second run reuses the builds like a
user's second `nox -s build-prefect` does, and rehearses the install and flow again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rangeserver import serve
from sdk_standin import FILENAME, TRIPLET, debian_standin, standin_project

from ot2wheels.paths import Layout, default_cache_dir
from ot2wheels.recipes import load_recipe
from ot2wheels.targets import load_targets
from ot2wheels.toolchains import get_toolchain

REPO = Path(__file__).resolve().parents[1]
TARGET = "ot2-standin"
SDK = "ot2-standin"  # its own slot in the shared cache: an installed `ot2` SDK stays untouched
# What a real OT-2 SDK sysroot would have to hold for the closure's recipes beyond the base
# sysroot: libyaml (pyyaml links it). The robot's own libraries: README "For OT-2 users".
SYSROOT_EXTRA = ("libyaml-dev",)


def _scratch_project(cache: Path, sha256: str, standin) -> Path:
    root = cache / "test-projects" / "sdk-closure"
    shutil.rmtree(root / "packages", ignore_errors=True)
    shutil.copytree(REPO / "packages", root / "packages")
    standin_project(root, TARGET, standin, sdk_sha256=sha256, sdk=SDK)  # sdk.toml pinned to the stand-in
    for name in ("noxfile.py", "tasks.py"):
        link = root / name
        if link.is_symlink() and link.resolve() != REPO / name:
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(REPO / name)
    return root


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
@pytest.mark.slow
def test_build_prefect_through_the_sdk_builds_every_must_build_and_runs_a_flow(tmp_path: Path) -> None:
    started = time.monotonic()
    cache = default_cache_dir()
    standin = debian_standin(REPO, tmp_path / "standin", SYSROOT_EXTRA, reproducible=True)
    root = _scratch_project(cache, standin.sha256, standin)
    env = {**os.environ, "OT2WHEELS_CACHE": str(cache)}
    with serve(standin.tarball.parent) as srv:
        pull = _run([sys.executable, "-m", "invoke", "sdk.pull", "--name", SDK, "--url", srv.url(FILENAME),
                     "--no-progress"], root, env, 900)
    assert pull.returncode == 0, pull.stdout + pull.stderr
    assert "TRUST ON FIRST USE" not in pull.stdout + pull.stderr  # verified against sdk.toml's pin
    assert not (root / "toolchain" / "sdk.lock").exists()
    layout = Layout.discover(root=root, cache=cache)
    target = load_targets(layout.targets_file).get(TARGET)
    toolchain = get_toolchain(target, layout)
    toolchain.ensure()
    assert toolchain.installed_sdk.sha256 == standin.sha256

    nox = _run([sys.executable, "-m", "nox", "-s", "build-prefect", "--", "--target", TARGET], root, env, 45 * 60)
    out = nox.stdout + nox.stderr
    assert nox.returncode == 0, out[-6000:]
    assert "flow result: 42" in out, out[-3000:]

    plan = json.loads((layout.plan_dir(TARGET) / "prefect.json").read_text())
    must = {e["name"] for e in plan["entries"] if e["bucket"] == "must-build"}
    with_recipe = {n for n in must if (layout.packages / n / "recipe.toml").is_file()}
    assert "cryptography" in with_recipe and len(with_recipe) >= 8, sorted(must)
    [summary] = [line for line in out.splitlines() if f"rehearsal PASSED on {TARGET}" in line]
    rehearsal = json.loads((layout.plan_dir(TARGET) / "prefect-rehearsal.json").read_text())
    assert rehearsal["passed"] and rehearsal["installed"]["prefect"] == "3.3.4"
    for name in sorted(with_recipe):
        recipe = load_recipe(layout.packages / name)
        pdir = layout.dist / TARGET / name
        [record_file] = pdir.glob(f"{name}-{recipe.version}-{target.cp}.json")
        record = json.loads(record_file.read_text())
        assert record["result"] == "passed" and record["gate"]["passed"], (name, record.get("error"))
        assert record["smoke"]["passed"], (name, record["smoke"])
        assert record["toolchain_digest"] == toolchain.digest, name  # built with this SDK
        log = record_file.with_suffix(".log").read_text()
        assert f"{TRIPLET}-gcc --sysroot={toolchain.sysroot}" in log, name  # the SDK's compiler
        # pip installed our build, or the same release from the index where a published wheel of it
        # fits this target (markupsafe 3.0.4 has manylinux_2_31_armv7l ones; pip ranks those first)
        ours = record["wheel"] in rehearsal["from_wheelhouse"]
        assert ours or rehearsal["installed"][name] == recipe.version, (name, rehearsal["installed"].get(name))
        if name == "cryptography":  # 44+ has armv7l wheels: the pin to our version is what keeps ours
            assert ours and rehearsal["installed"][name] == "38.0.4", rehearsal["from_wheelhouse"]
    crypto_log = (layout.dist / TARGET / "cryptography").glob("*.log")
    log = next(crypto_log).read_text()
    # the SDK's Rust path: its sysroot has no Rust std, so the host release's std for armv7
    assert f"({TARGET}'s sysroot has no std)" in log or "# rust: rustup toolchain" in log, log[:3000]
    assert "# crates: " in log
    print(f"\n{summary}\nsdk closure test: {time.monotonic() - started:.0f}s")
