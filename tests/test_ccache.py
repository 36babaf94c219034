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
def test_forced_rebuild_hits_the_compiler_cache(fresh_project: Project) -> None:
    """Two forced builds of the same recipe, each in its own temp tree: the second one hits."""
    pairs = fresh_project.matrix(["markupsafe"], ["bookworm-armhf"])
    cache = fresh_project.layout.cache
    first = pipeline.build_all(fresh_project, pairs, force=True, say=lambda s: None)
    assert first[0].record.result == "passed"
    ccache.zero_stats(cache)
    second = pipeline.build_all(fresh_project, pairs, force=True, say=lambda s: None)
    assert second[0].record.result == "passed"  # really rebuilt, not reused
    counters = ccache.stats(cache)
    assert ccache.hits(counters) >= 1, counters
    assert counters.get("cache_miss", 0) == 0, counters
    log = second[0].record_path.with_suffix(".log").read_text()
    assert re.search(r"CC=ccache \S*/hostguard/arm-linux-gnueabihf-gcc --sysroot=", log), log[:2000]


def test_available_on_this_host() -> None:
    notes: list[str] = []
    assert ccache.available(notes.append) is True  # installed through hosttools if it was missing
    assert not any("without ccache" in n for n in notes)
