"""Wheel filenames and project names as packaging reads them, without importing packaging.utils.

packaging.utils imports packaging.tags, which imports logging, platform, subprocess and
sysconfig: about a fifth of the CPU time of publishing one wheel into an existing index
(`python -m ot2wheels.index`), more than parsing its state. The index's publish path reads
filenames here instead: the common, plain form is parsed directly; anything else (and every
invalid name) is handed to packaging.utils.parse_wheel_filename, so packaging stays the one
judge of what is valid and says what is wrong. tests/test_wheelname.py compares both on
valid and invalid names.
"""

from __future__ import annotations

import re
from functools import lru_cache

from packaging.version import InvalidVersion, Version

# A strict subset of what the wheel spec allows (packaging accepts more; that goes to packaging):
# name (no "__", escaped as the spec says), version, optional build tag starting with a digit,
# then python-abi-platform tags, each a dot-separated set of plain components (the python
# tag's components are identifiers, as packaging >= 26.3 requires).
_PLAIN = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._]*[A-Za-z0-9])?)-(?P<version>[A-Za-z0-9.!+_]+)"
    r"(?:-(?P<build>\d+)(?P<build_rest>[A-Za-z0-9_.]*))?"
    r"-(?P<py>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)-(?P<abi>\w+(?:\.\w+)*)-(?P<plat>\w+(?:\.\w+)*)\.whl",
    re.ASCII,
)


class BadWheelName(ValueError):
    """packaging.utils.InvalidWheelFilename's message, as a ValueError (catching it does not
    import packaging.utils)."""


def canonical_name(name: str) -> str:
    """packaging.utils.canonicalize_name (PEP 503: runs of -, _ and . become one -, lower case)."""
    value = name.lower().replace("_", "-").replace(".", "-")
    while "--" in value:
        value = value.replace("--", "-")
    return value


@lru_cache(maxsize=1 << 12)  # versions and tag sets repeat across the wheels of an index
def parse_version(text: str) -> Version:
    """Version(text), parsed once per distinct string (pages sort the same versions again and again)."""
    return Version(text)


@lru_cache(maxsize=1 << 12)
def _tags(py: str, abi: str, plat: str) -> frozenset[str]:
    return frozenset(f"{p}-{a}-{pl}" for p in py.lower().split(".") for a in abi.lower().split(".")
                     for pl in plat.lower().split("."))


@lru_cache(maxsize=1 << 15)  # a full build reads each name twice (admission, then its tags)
def parse_wheel_filename(filename: str) -> tuple[str, Version, tuple[int, str] | tuple[()], frozenset[str]]:
    """(canonical project name, version, build tag, tags as "python-abi-platform" strings in
    lower case), as packaging.utils.parse_wheel_filename gives them; BadWheelName if invalid."""
    m = _PLAIN.fullmatch(filename)
    if m is not None and "__" not in m["name"]:
        try:
            version = parse_version(m["version"])
        except InvalidVersion:
            pass  # packaging says why
        else:
            build: tuple[int, str] | tuple[()] = (int(m["build"]), m["build_rest"]) if m["build"] else ()
            return canonical_name(m["name"]), version, build, _tags(m["py"], m["abi"], m["plat"])
    from packaging.utils import InvalidWheelFilename
    from packaging.utils import parse_wheel_filename as packaging_parse

    try:
        name, version, build, parsed = packaging_parse(filename)
    except InvalidWheelFilename as exc:
        raise BadWheelName(str(exc)) from None
    return str(name), version, build, frozenset(str(t) for t in parsed)
