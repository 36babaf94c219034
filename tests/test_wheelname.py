"""ot2wheels.wheelname reads wheel filenames and project names as packaging does, without its tags module."""

from __future__ import annotations

import subprocess
import sys

import pytest
from packaging.utils import InvalidWheelFilename, canonicalize_name
from packaging.utils import parse_wheel_filename as packaging_parse

from ot2wheels.wheelname import BadWheelName, canonical_name, parse_wheel_filename

NAMES = [
    "foo-1.0-py3-none-any.whl",
    "Foo_Bar-1.0.post1-cp311-cp311-linux_armv7l.whl",
    "foo.bar-2!1.0rc1+local.7-1-py2.py3-none-any.whl",
    "foo-1.0-12abc-cp311-abi3-manylinux2014_armv7l.manylinux_2_17_armv7l.whl",
    "pyyaml-6.0.3-cp39-cp39-manylinux2014_armv7l.manylinux_2_17_armv7l.whl",
    "FOO-1.0-CP311-CP311-LINUX_ARMV7L.whl",
    "foo-01.00-py3-none-any.whl",  # normalized by Version
    "foo-1.0_post1-py3-none-any.whl",
    "foo-1.0-py3-none-any.tar.gz",  # invalid from here on
    "foo-1.0-any.whl",
    "foo__bar-1.0-py3-none-any.whl",
    "foo-notaversion-py3-none-any.whl",
    "foo-1.0-x1-py3-none-any.whl",
    "foo-1.0-3py-none-any.whl",
    "foo-1.0-py3..py2-none-any.whl",
    "-1.0-py3-none-any.whl",
    "fóo-1.0-py3-none-any.whl",  # valid for packaging (\w is Unicode there): goes to packaging
    "foo-1.0-1-2-py3-none-any.whl",
]


def _packaging(filename: str) -> object:
    try:
        name, version, build, tags = packaging_parse(filename)
    except InvalidWheelFilename as exc:
        return ("invalid", str(exc))
    return (str(name), version, build, frozenset(str(t) for t in tags))


def _ours(filename: str) -> object:
    try:
        return parse_wheel_filename(filename)
    except BadWheelName as exc:
        return ("invalid", str(exc))


@pytest.mark.parametrize("filename", NAMES)
def test_same_reading_as_packaging(filename: str) -> None:
    assert _ours(filename) == _packaging(filename)


def test_plain_names_do_not_import_packaging_utils() -> None:
    code = ("import sys; from ot2wheels.wheelname import parse_wheel_filename as p; "
            "r = p('Foo_Bar-1.0-1x-cp311-cp311-linux_armv7l.whl'); "
            "print(r[0], r[2], sorted(r[3]), 'packaging.utils' in sys.modules, 'packaging.tags' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["foo-bar", "(1,", "'x')", "['cp311-cp311-linux_armv7l']", "False", "False"]


@pytest.mark.parametrize("name", ["Foo", "foo.bar", "foo__bar", "Foo-_-.Bar", "a", "-x-", "ruamel.yaml.clib"])
def test_canonical_name_as_packaging(name: str) -> None:
    assert canonical_name(name) == canonicalize_name(name)
