"""The robot's side of the index: the target's CPython under qemu-arm runs pip against the served
index and the installed wheel passes its smoke test. An old pip (22.0, like the robot's: PEP 503
HTML only) and a current pip both do it.

Then every command the landing page prints is run as printed (BASE_URL and PROJECT filled in) in a
stand-in for the device's shell (`python3` is the target CPython under qemu-arm), with pip's default
index replaced by a loopback PyPI-like index holding a newer sdist of the same project: each must
install our wheel and never fetch that sdist. One project (markupsafe), bookworm only."""

import hashlib
import html
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fakeindex import make_sdist

from ot2wheels.build import build_one
from ot2wheels.index.build import build_index
from ot2wheels.index.serve import serve_index
from ot2wheels.pipeline import smoke_all
from ot2wheels.rehearse import make_device
from ot2wheels.smoke import run_smoke
from ot2wheels.toolchains import get_toolchain

pytestmark = pytest.mark.integration

TARGET = "bookworm-armhf"
OURS = "markupsafe-3.0.4"
NEWER_SDIST = "markupsafe-9.9.tar.gz"
# Raspberry Pi OS's stock /etc/pip.conf, with its index (piwheels) replaced by a loopback stand-in.
STOCK_PIP_CONF = "[global]\nextra-index-url={url}/piwheels/\n"


@pytest.fixture(scope="module")
def served_index(repo_project, tmp_path_factory):
    """markupsafe cross-built and smoke-tested for bookworm, published in a fresh index, served on 127.0.0.1."""
    target = repo_project.targets.get(TARGET)
    recipe = repo_project.recipe("markupsafe")
    built = build_one(recipe, target, repo_project.layout, say=lambda s: None)
    assert built.ok, built.record.error
    ((_r, smoke),) = smoke_all(repo_project, [(recipe, target)], say=lambda s: None)
    assert smoke.passed, smoke.output
    index_dir = tmp_path_factory.mktemp("index") / "index"
    result = build_index(repo_project.layout.dist, index_dir, None, targets=repo_project.targets)
    assert result.wheels == 1, result.skipped
    with serve_index(index_dir) as url:
        yield url, get_toolchain(target, repo_project.layout), built, index_dir


@pytest.fixture(scope="module")
def fake_pypi(tmp_path_factory):
    """A PEP 503 index on 127.0.0.1 (HTML, so pip 22.0 reads it too) with only a newer markupsafe sdist,
    under /simple/ (standing in for PyPI) and /piwheels/ (for the index Raspberry Pi OS configures)."""
    root = tmp_path_factory.mktemp("pypi")
    name, data = make_sdist("markupsafe", "9.9", {"setup.py": "raise SystemExit('the newer sdist was built')\n"})
    assert name == NEWER_SDIST
    (root / "files").mkdir()
    (root / "files" / name).write_bytes(data)
    for index in ("simple", "piwheels"):
        page = root / index / "markupsafe" / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text(f'<!DOCTYPE html><html><body><a href="../../files/{name}#sha256='
                        f'{hashlib.sha256(data).hexdigest()}">{name}</a></body></html>\n')
    requests: list[str] = []
    with serve_index(root, on_request=lambda path, _ctype: requests.append(path)) as url:
        yield url, requests


PIPS = {"old": "pip==22.0.4", "current": "pip"}


@pytest.fixture(scope="module")
def pips(tmp_path_factory) -> dict[str, Path]:
    """pip 22.0 (the robot's generation: PEP 503 HTML only) and current pip, each unpacked from its
    wheel (sha256-checked by the host's pip) into a folder `python3 -m pip` runs from, so the
    target CPython compiles pip's modules once, not on every call."""
    out = {}
    for name, spec in PIPS.items():
        dest = tmp_path_factory.mktemp(f"pip-{name}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "-d", str(dest), spec], check=True, capture_output=True)
        wheel = next(dest.glob("pip-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(dest / "unpacked")
        out[name] = dest / "unpacked"
    return out


# --- the landing page's instructions, run as printed ------------------------------------------------
def landing_instructions(index_dir: Path, target: str, base_url: str, project: str) -> dict[str, str]:
    """kind -> the command block the landing page prints for `target`, placeholders filled."""
    page = (index_dir / "index.html").read_text()
    section = page.split(f'<h2 id="{target}">', 1)[1].split("<h2 ", 1)[0]
    blocks = re.findall(r'<pre data-instruction="([a-z-]+)">(.*?)</pre>', section, re.S)
    assert blocks, "the landing page prints no instructions"
    return {kind: html.unescape(text).replace("BASE_URL", base_url).replace("PROJECT", project)
            for kind, text in blocks}


def _installed(prefix: Path) -> list[Path]:
    return sorted(prefix.glob("**/site-packages/markupsafe-*.dist-info"))


def _assert_ours(prefix: Path, requests: list[str], out: str) -> None:
    (info,) = _installed(prefix)
    assert info.name == f"{OURS}.dist-info", out
    assert "Tag: cp311-cp311-linux_armv7l" in (info / "WHEEL").read_text()
    assert not [r for r in requests if NEWER_SDIST in r], f"pip fetched the newer sdist:\n{out}"


@pytest.fixture(scope="module")
def device_toolchain(repo_project):
    """The target's sysroot plus python3-venv, which the landing page tells users to install."""
    toolchain = get_toolchain(repo_project.targets.get(TARGET), repo_project.layout, ("python3-venv",))
    toolchain.ensure()
    return toolchain


@pytest.fixture
def device(served_index, fake_pypi, device_toolchain, tmp_path):
    """The device's shell, with a plain virtual environment activated (bookworm's Python is
    externally managed: the landing page sends users to a venv). Returns (make, requests, our
    simple URL); make() gives the device and the landing page's blocks for it."""
    url, _toolchain, _built, index_dir = served_index
    pypi, requests = fake_pypi
    requests.clear()

    def make(stock_pip_conf: bool = False):
        config_dirs = None
        if stock_pip_conf:
            config_dirs = tmp_path / "etc"
            (config_dirs / "pip").mkdir(parents=True)
            (config_dirs / "pip" / "pip.conf").write_text(STOCK_PIP_CONF.format(url=pypi))
        dev = make_device(device_toolchain, tmp_path, index_url=f"{pypi}/simple/", config_dirs=config_dirs)
        return dev, landing_instructions(index_dir, TARGET, url, "markupsafe")

    return make, requests, f"{url}/{TARGET}/simple/"


@pytest.mark.slow  # ~1-2 min: the venv's own pip is installed and run under qemu-arm
def test_venv_instruction_installs_our_wheel(device, tmp_path):
    """The venv recipe, with the pip the venv brings (bookworm's python3-venv: pip 23.0.1)."""
    make, requests, _ = device
    dev, blocks = make()
    rc, out = dev.run(blocks["venv"], tmp_path)
    assert rc == 0, out
    _assert_ours(dev.home / "ot2wheels-venv", requests, out)


def _venv(dev, tmp_path: Path) -> Path:
    """A venv without pip (pip comes from the old or current pip wheel), activated as the page says."""
    rc, out = dev.run(f"python3 -m venv --without-pip {tmp_path / 'env'}", tmp_path)
    assert rc == 0, out
    dev.env["PATH"] = f"{tmp_path / 'env' / 'bin'}:{dev.env['PATH']}"
    return tmp_path / "env"


def test_naive_install_picks_the_newer_sdist(device, tmp_path, pips):
    """The control: without the page's options pip takes the newer sdist (the bug this prevents)."""
    make, requests, simple = device
    dev, _ = make()
    env = _venv(dev, tmp_path)
    rc, out = dev.run(f"python3 -m pip install --extra-index-url {simple} markupsafe", tmp_path, pip=pips["current"])
    assert rc != 0 and [r for r in requests if NEWER_SDIST in r], out
    assert not _installed(env)


# Each command block with old and current pip; blocks with several pip calls once each, to keep
# the run short (pip under qemu-arm takes seconds per call).
@pytest.mark.parametrize("pip, kind", [
    ("old", "install"), ("current", "install"), ("old", "pip-config"), ("current", "pip-config-stock"),
    ("old", "offline"), ("current", "offline"),
])
def test_instruction_installs_our_wheel_not_the_newer_sdist(device, repo_project, served_index, tmp_path, pips,
                                                            pip, kind):
    make, requests, _ = device
    dev, blocks = make(stock_pip_conf=kind == "pip-config-stock")
    env = _venv(dev, tmp_path)
    if kind == "offline":  # downloaded on another machine (here: the same shell), installed without network
        rc, out = dev.run(blocks["offline-download"], tmp_path, pip=pips[pip])
        assert rc == 0, out
        assert [p.name for p in (tmp_path / "wheels").iterdir()] == [f"{OURS}-cp311-cp311-linux_armv7l.whl"]
        script = blocks["offline-install"]
    else:
        script = blocks[kind.removesuffix("-stock")]
    rc, out = dev.run(script, tmp_path, pip=pips[pip])
    assert rc == 0, out
    _assert_ours(env, requests, out)
    if kind == "pip-config-stock":  # Raspberry Pi OS's extra-index-url kept, ours on the same line
        user_conf = (dev.home / ".config" / "pip" / "pip.conf").read_text()
        lines = [ln for ln in user_conf.splitlines() if ln.replace(" ", "").startswith("extra-index-url=")]
        assert len(lines) == 1 and "/piwheels/" in lines[0] and f"/{TARGET}/simple/" in lines[0], user_conf
        assert any("/piwheels/markupsafe/" in r for r in requests), "the stock index must still be asked"
    if kind == "install":  # and the installed wheel works on the target
        (site,) = env.glob("lib/python3.*/site-packages")
        passed, output = run_smoke(repo_project.recipe("markupsafe"), served_index[1], site)
        assert passed, output
