"""Which wheels a smoke test installs besides the wheel itself (no qemu: the closure walk only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeindex import make_wheel
from packaging.requirements import Requirement

from ot2wheels.errors import SmokeError
from ot2wheels.smoke import dependency_closure, install_wheels
from ot2wheels.targets import Target

OT2 = Target(name="ot2", python="3.10", platform="linux_armv7l", glibc=(2, 25),
             triplet="arm-buildroot-linux-gnueabihf", provider="buildroot-sdk")


def put(where: Path, name: str, version: str, requires: list[str] = ()) -> Path:
    filename, data = make_wheel(name, version, requires=requires)
    (where / filename).write_bytes(data)
    return where / filename


def test_closure_follows_markers_extras_and_keeps_the_wheel_under_test(tmp_path: Path) -> None:
    house, dist = tmp_path / "house", tmp_path / "dist"
    house.mkdir(), dist.mkdir()
    wheel = put(dist, "clib", "0.2", requires=["helper>=1", "old; python_version < '3.8'", "cli; extra == 'x'"])
    put(house, "helper", "1.5", requires=["fmt[color]"])
    put(house, "fmt", "2.0", requires=["colorlib; extra == 'color'", "nope; extra == 'other'"])
    put(house, "colorlib", "1.0", requires=["clib>=0.1"])  # back to the wheel under test
    put(house, "clib", "0.1")  # a copy from elsewhere: never replaces the wheel under test
    put(house, "unrelated", "1.0")
    got = dependency_closure(wheel, [Requirement("helper>=1")], house, OT2)
    assert [p.name.split("-")[0] for p in got] == ["colorlib", "fmt", "helper"]
    site = tmp_path / "site"
    install_wheels([wheel, *got], site, "/usr/bin/python3.10")
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == \
        ["clib", "colorlib", "fmt", "helper"]
    assert (site / "clib-0.2.dist-info" / "INSTALLER").read_text() == "ot2wheels-smoke\n"


def test_closure_errors_name_the_wheel_and_the_requirement(tmp_path: Path) -> None:
    house = tmp_path / "house"
    house.mkdir()
    wheel = put(tmp_path, "app", "1.0")
    put(house, "helper", "1.0")
    with pytest.raises(SmokeError, match=r"app-1.0-py3-none-any.whl: runtime dependency helper>=2 does not match"):
        dependency_closure(wheel, [Requirement("helper>=2")], house, OT2)
    with pytest.raises(SmokeError, match="runtime dependency missing has no target wheel"):
        dependency_closure(wheel, [Requirement("missing")], house, OT2)
    assert dependency_closure(wheel, [], None, OT2) == []
