"""The Debian toolchain's private apt, against the real archive (through the shared cache's state)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ot2wheels import locks
from ot2wheels.errors import ToolchainError
from ot2wheels.pipeline import Project
from ot2wheels.toolchains.debian import DebianToolchain

pytestmark = pytest.mark.integration


def test_disk_full_during_deb_download_says_so(fresh_project: Project, small_disk) -> None:
    """ENOSPC while apt downloads .debs: the first line (all a build's console shows) says
    "disk full at" the download directory, not just "apt-get download failed"."""
    disk = small_disk(200)
    cache = fresh_project.layout.cache
    tc = DebianToolchain(fresh_project.targets.get("bookworm-armhf"), fresh_project.layout)
    with locks.cache_lock(cache, "apt-bookworm-armhf"):
        tc.apt.prepare()
        tc.apt.update()
        with pytest.raises(ToolchainError) as exc:
            tc.apt.download(["libpython3.11-stdlib"], disk / "debs")  # ~1.8 MB
    first = str(exc.value).splitlines()[0]
    assert first.startswith(f"disk full at {disk / 'debs'}: apt-get download failed"), first
    assert not list(Path(disk / "debs").glob("*.deb"))
