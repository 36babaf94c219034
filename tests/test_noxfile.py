"""The nox sessions as a user runs them: listed per recipe and Python, failures exit non-zero."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, make_tiny_sdist, serve_directory, sha, write_tiny_recipe


def nox(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nox", *args], cwd=cwd, capture_output=True, text=True,
                          env=env)


def test_sessions_per_recipe_and_python_version() -> None:
    out = nox("-l").stdout
    for name in ("markupsafe", "pyyaml", "msgpack", "ujson", "greenlet", "regex"):
        assert f"- build-{name} ->" in out
        assert f"- build-{name}-3.9" in out and f"- build-{name}-3.11" in out
    for session in ("build", "test-arm", "demo", "tests"):
        assert f" {session} ->" in out


@pytest.mark.integration
def test_failed_build_session_exits_non_zero_naming_the_failure(tmp_path: Path, cache_dir: Path,
                                                               checkout_copy: Path) -> None:
    root = checkout_copy
    (tmp_path / "srv").mkdir()
    sdist = make_tiny_sdist(tmp_path / "srv", body="syntax error here")
    with serve_directory(tmp_path / "srv") as url:
        write_tiny_recipe(root / "packages", f"{url}/{sdist.name}", sha(sdist))
        env = {**os.environ, "OT2WHEELS_CACHE": str(cache_dir),
               "PYTHONPATH": str(REPO / "src")}
        run = nox("-s", "build-tiny-3.11", cwd=root, env=env)
    assert run.returncode != 0
    assert "failed:" in run.stderr and "build tiny 1.0 for bookworm-armhf" in run.stderr
    assert (root / "dist" / "bookworm-armhf" / "tiny" / "tiny-1.0-cp311.log").is_file()


def test_broken_recipe_next_to_good_ones_keeps_every_session(checkout_copy: Path) -> None:
    """One invalid recipe (or targets.toml) must not remove the other build-<name> sessions;
    its own session fails with the error, printed once."""
    root = checkout_copy
    write_tiny_recipe(root / "packages", "http://127.0.0.1:9/tiny-1.0.tar.gz", "0" * 64)
    (root / "packages" / "broken").mkdir()
    (root / "packages" / "broken" / "recipe.toml").write_text(
        '[package]\nname = "broken"\nversion = "1.0"\nflavour = "sour"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    listed = nox("-l", cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    for name in ("build-tiny", "build-tiny-3.11", "build-broken", "build", "tests"):
        assert f"- {name} ->" in listed.stdout or f"* {name} ->" in listed.stdout
    assert (listed.stdout + listed.stderr).count("flavour") == 1
    run = nox("-s", "build-broken", cwd=root, env=env)
    assert run.returncode != 0
    assert (run.stdout + run.stderr).count("flavour") == 1 and "packages/broken/recipe.toml" in run.stderr
    assert "Traceback" not in run.stderr

    targets = root / "toolchain" / "targets.toml"
    targets.write_text(targets.read_text() + "\n[nonsense\n")
    listed = nox("-l", cwd=root, env=env)
    assert listed.returncode == 0 and "- build-tiny ->" in listed.stdout and "- build-broken ->" in listed.stdout
    run = nox("-s", "build-tiny", cwd=root, env=env)
    assert run.returncode != 0 and run.stderr.count("targets.toml: not valid TOML") == 1
