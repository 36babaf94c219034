from __future__ import annotations

from pathlib import Path

import pytest

from ot2wheels.paths import Layout, default_cache_dir
from ot2wheels.pypi import IndexClient
from ot2wheels.rehearse import derived_constraints, rehearse
from ot2wheels.targets import load_targets
from ot2wheels.toolchains import get_toolchain

ROOT = Path(__file__).resolve().parents[1]


def test_constraints_pin_our_wheels_versions(tmp_path: Path) -> None:
    cons = tmp_path / "c.txt"
    cons.write_text("# pins\nUjson==5.13.0\nsix==1.17.0\n")
    ours = [tmp_path / "ujson-5.11.0-cp311-cp311-linux_armv7l.whl",
            tmp_path / "cryptography-38.0.4-cp311-cp311-linux_armv7l.whl"]
    out = derived_constraints(cons, ours, tmp_path / "d.txt")
    assert out is not None
    assert out.read_text().splitlines() == ["# pins", "ujson==5.11.0  # ours (was: Ujson==5.13.0)", "six==1.17.0",
                                            "cryptography==38.0.4  # ours"]
    assert derived_constraints(None, ours, tmp_path / "e.txt") is None


CHILD = """
import subprocess, sys, six
out = subprocess.run([sys.executable, "-c", "import platform; print(platform.machine())"],
                     capture_output=True, text=True, check=True).stdout.strip()
assert out == "armv7l", out
print("child ran on", out, "six", six.__version__)
"""


@pytest.fixture
def bookworm():
    """(layout, ready bookworm-armhf toolchain) on the shared cache."""
    layout = Layout.discover(ROOT, cache=default_cache_dir())
    toolchain = get_toolchain(load_targets(layout.targets_file).get("bookworm-armhf"), layout)
    toolchain.ensure()
    return layout, toolchain


@pytest.mark.integration
def test_rehearsal_installs_with_target_pip_and_runs_children_under_qemu(bookworm) -> None:
    """Target CPython under qemu-arm runs pip (--only-binary) and a program that starts a child Python."""
    layout, toolchain = bookworm
    result = rehearse("six==1.17.0", toolchain, [], IndexClient(layout.cache), layout.cache, code=CHILD,
                      say=lambda s: None)
    assert result.passed, result.output
    assert result.installed == {"six": "1.17.0"} and result.from_wheelhouse == []
    assert "child ran on armv7l" in result.output


@pytest.mark.integration
def test_rehearsal_failure_is_reported_not_raised(bookworm) -> None:
    layout, toolchain = bookworm
    # pyyaml has no armv7l wheel on the index: --only-binary must refuse it without our wheel
    result = rehearse("pyyaml==6.0.3", toolchain, [], IndexClient(layout.cache), layout.cache, say=lambda s: None)
    assert not result.passed and result.run_s == 0.0
    assert "pyyaml" in result.output.lower()
