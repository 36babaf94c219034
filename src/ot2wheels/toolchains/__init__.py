"""Toolchain providers behind one interface; builds, the gate and smoke tests use only that."""

from __future__ import annotations

from ..paths import Layout
from ..targets import Target
from .base import Toolchain


def get_toolchain(target: Target, layout: Layout, extra_packages: tuple[str, ...] = ()) -> Toolchain:
    """The toolchain for `target`, with `extra_packages` (recipe target-libs) in its sysroot."""
    if target.provider == "debian":
        from .debian import DebianToolchain

        return DebianToolchain(target, layout.cache, extra_packages)
    if target.provider == "buildroot-sdk":
        from .buildroot import BuildrootToolchain

        return BuildrootToolchain(target, layout, extra_packages)
    target.require_buildable()
    raise ValueError(f"unknown provider {target.provider!r}")  # targets.py validates this


__all__ = ["Toolchain", "get_toolchain"]
