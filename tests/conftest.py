"""Shared fixtures: a Layout whose dist/ is private to the test and whose cache is the real one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ot2wheels.paths import Layout
from ot2wheels.pipeline import Project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """The checkout's recipes and targets, the user's toolchain cache, a fresh dist/."""
    return Layout.discover(root=ROOT, dist=tmp_path / "dist")


@pytest.fixture
def project(layout: Layout) -> Project:
    return Project.load(layout)
