from __future__ import annotations

import re
from pathlib import Path

import pytest

from ot2wheels import ccache, pipeline
from ot2wheels.pipeline import Project


def test_environment_wraps_compilers_not_the_linker(tmp_path: Path) -> None:
    env = {"CC": "arm-linux-gnueabihf-gcc --sysroot=/s", "CXX": "arm-linux-gnueabihf-g++ --sysroot=/s",
           "LDSHARED": "arm-linux-gnueabihf-gcc --sysroot=/s -shared"}
    out = ccache.environment(env, tmp_path, basedir=tmp_path / "work" / "b1")
    assert out["CC"] == "ccache arm-linux-gnueabihf-gcc --sysroot=/s"
    assert out["CXX"].startswith("ccache arm-linux-gnueabihf-g++")
    assert out["LDSHARED"] == env["LDSHARED"]
    assert out["CCACHE_DIR"] == str(tmp_path / "ccache")
    assert out["CCACHE_BASEDIR"] == str(tmp_path / "work" / "b1")
    assert out["CCACHE_NOHASHDIR"] == "1"
    assert ccache.environment(out, tmp_path, tmp_path)["CC"].count("ccache") == 1  # idempotent
    assert env["CC"].startswith("arm")  # input untouched


@pytest.mark.integration
def test_forced_rebuild_hits_the_compiler_cache(fresh_project: Project, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Two forced builds of the same recipe, each in its own temp tree: the second one hits.

    Counted from ccache's per-call stats log of these builds only (the cache's global counters
    also count whatever else builds on this machine at the same time)."""
    pairs = fresh_project.matrix(["markupsafe"], ["bookworm-armhf"])
    first = pipeline.build_all(fresh_project, pairs, force=True, say=lambda s: None)
    assert first[0].record.result == "passed"
    stats_log = tmp_path / "ccache-stats.log"
    monkeypatch.setenv("CCACHE_STATSLOG", str(stats_log))  # inherited by the build's compilers
    second = pipeline.build_all(fresh_project, pairs, force=True, say=lambda s: None)
    assert second[0].record.result == "passed"  # really rebuilt, not reused
    calls = [c.split("\n") for c in stats_log.read_text().split("# ")[1:]]
    assert calls, "no compile went through ccache"
    assert all(any(line.endswith("_cache_hit") for line in call) for call in calls), calls
    assert not any("cache_miss" in call for call in calls), calls
    log = second[0].record_path.with_suffix(".log").read_text()
    assert re.search(r"CC=ccache \S*/hostguard/arm-linux-gnueabihf-gcc --sysroot=", log), log[:2000]


def test_available_on_this_host() -> None:
    notes: list[str] = []
    assert ccache.available(notes.append) is True  # installed through hosttools if it was missing
    assert not any("without ccache" in n for n in notes)
