"""Toolchain providers behind one interface; builds, the gate and smoke tests use only that.

`PROVIDERS` maps a target's `provider` (toolchain/targets.toml) to its class; every class takes
`(target, layout, extra_packages)`. `targets.PROVIDERS` lists the same names, plus "none" for
planning targets, for validation (a unit test keeps them in step).
"""

from __future__ import annotations

from ..errors import ConfigError
from ..paths import Layout
from ..targets import Target
from .base import Toolchain
from .buildroot import BuildrootToolchain
from .debian import DebianToolchain

PROVIDERS: dict[str, type[Toolchain]] = {
    "debian": DebianToolchain,
    "buildroot-sdk": BuildrootToolchain,
}


def get_toolchain(target: Target, layout: Layout, extra_packages: tuple[str, ...] = ()) -> Toolchain:
    """The toolchain for `target`, with `extra_packages` (recipe target-libs) in its sysroot."""
    target.require_buildable()  # a planning target (provider "none") has no toolchain
    try:
        provider = PROVIDERS[target.provider]
    except KeyError:  # targets.py validates the name; this guards hand-made Target objects
        raise ConfigError(f"target {target.name}: unknown provider {target.provider!r}; "
                          f"known: {', '.join(sorted(PROVIDERS))}") from None
    return provider(target, layout, extra_packages)


__all__ = ["PROVIDERS", "Toolchain", "get_toolchain"]
