"""The robot's side of the index: the target's CPython under qemu-arm runs pip against the served
index and the installed wheel passes its smoke test. An old pip (22.0, like the robot's: PEP 503
HTML only) and a current pip both do it."""

import subprocess
import sys
from pathlib import Path

import pytest

from ot2wheels.build import build_one
from ot2wheels.index.build import build_index
from ot2wheels.index.serve import serve_index
from ot2wheels.smoke import run_smoke, target_pip_install
from ot2wheels.toolchains import get_toolchain

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served_index(repo_project, tmp_path_factory):
    """markupsafe cross-built for bookworm, published in a fresh index, served on 127.0.0.1."""
    target = repo_project.targets.get("bookworm-armhf")
    built = build_one(repo_project.recipe("markupsafe"), target, repo_project.layout, say=lambda s: None)
    assert built.ok, built.record.error
    index_dir = tmp_path_factory.mktemp("index") / "index"
    build_index(repo_project.layout.dist, index_dir, None, targets=repo_project.targets)
    with serve_index(index_dir) as url:
        yield url, get_toolchain(target, repo_project.layout), built


def _pip_wheel(spec: str, dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "-d", str(dest), spec], check=True, capture_output=True)
    return next(dest.glob("pip-*.whl"))


@pytest.mark.parametrize("pip_spec", ["pip==22.0.4", "pip"], ids=["old-pip-22.0", "current-pip"])
def test_target_pip_installs_from_the_served_index(served_index, repo_project, tmp_path: Path, pip_spec: str) -> None:
    url, toolchain, _built = served_index
    pip = _pip_wheel(pip_spec, tmp_path / "pip")
    site = tmp_path / "site"
    out = target_pip_install(toolchain, pip, f"{url}/bookworm-armhf/simple/", ["markupsafe==3.0.4"], site)
    assert "Successfully installed markupsafe-3.0.4" in out
    installed = next(site.glob("markupsafe-3.0.4.dist-info"))
    assert (installed / "WHEEL").read_text().count("cp311-cp311-linux_armv7l") == 1
    passed, output = run_smoke(repo_project.recipe("markupsafe"), toolchain, site)
    assert passed, output
