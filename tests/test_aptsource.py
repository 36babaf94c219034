from pathlib import Path

import pytest

from ot2wheels.aptsource import debian_mirror, host_sources
from ot2wheels.errors import ToolchainError


def test_reads_deb822_and_one_line_sources_skipping_security(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
    )
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert ("http://other.example/debian", ["bookworm"]) in host_sources(tmp_path)
    assert debian_mirror(tmp_path) == "http://other.example/debian"


def test_no_debian_source_says_what_to_set(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://ppa.example/ubuntu jammy main\n")
    with pytest.raises(ToolchainError, match="mirror"):
        debian_mirror(tmp_path)


def test_this_host_has_a_debian_mirror() -> None:
    assert debian_mirror().startswith(("http://", "https://"))
