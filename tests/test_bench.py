"""The benchmark's helpers, and (slow) one real emulated build under qemu-arm."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import run  # noqa: E402
import sides  # noqa: E402

from ot2wheels.pipeline import Project  # noqa: E402

RESULTS = {
    "date": "2026-01-01 00:00 UTC", "command": "python bench/run.py",
    "machine": {"nproc": 2, "cpu": "Test CPU", "ram_gib": 8.0, "kernel": "6.1", "qemu": "qemu-arm 7.2"},
    "ab": {"target": "bookworm-armhf",
           "rows": {"markupsafe": {"cross": {"seconds": 2.0}, "emulated": {"seconds": 10.0},
                                   "native": {"seconds": 1.0}, "emulated_vs_cross": 5.0, "cross_vs_native": 2.0}},
           "emulated_vs_cross": {"per_package": {"markupsafe": 5.0}, "geomean": 5.0},
           "cross_vs_native": {"per_package": {"markupsafe": 2.0}, "geomean": 2.0}},
    "c": {"builds": 4, "jobs": 2, "cold_s": 40.0, "warm_s": 0.2, "forced_ccache_s": 12.0,
          "warm_over_cold": 0.005, "forced_ccache_over_cold": 0.3, "ccache_hits": 4, "ccache_misses": 0},
    "d": {"markupsafe-3.0.4-cp311-cp311-linux_armv7l.whl": {"cold_s": 3.0, "warm_s": 2.0, "passed": True}},
}


def test_geomean() -> None:
    assert run.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert run.geomean([]) == 0.0


def test_markdown_has_every_ratio_and_the_machine() -> None:
    md = run.markdown(RESULTS)
    assert md.startswith(run.README_START) and md.endswith(run.README_END)
    assert "2 CPUs (Test CPU), 8.0 GiB RAM" in md
    assert "| markupsafe | 2.0 s | 10.0 s | 1.0 s | 5.0x | 2.0x |" in md
    assert "emulated/cross **5.0x**" in md and "cross/native **2.0x**" in md
    assert "| warm: unchanged recipes, all reused | 0.20 s | 0.005 |" in md
    assert "4 hits, 0 misses" in md
    assert "| markupsafe-3.0.4-cp311-cp311-linux_armv7l.whl | 3.0 s | 2.0 s |" in md


def test_readme_block_is_replaced_in_place(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(run, "HERE", tmp_path)
    (tmp_path / "README.md").write_text(f"# B\nintro\n{run.README_START}\nold numbers\n{run.README_END}\ntail\n")
    run.write_readme(RESULTS)
    text = (tmp_path / "README.md").read_text()
    assert "old numbers" not in text and text.startswith("# B\nintro\n") and text.endswith("tail\n")
    assert text.count(run.README_START) == 1 and "Test CPU" in text


def test_machine_reads_this_host() -> None:
    m = run.machine()
    assert m["nproc"] >= 1 and m["ram_gib"] > 0 and m["qemu"].startswith("qemu-arm")


def test_backend_of_reads_pyproject(tmp_path: Path) -> None:
    assert sides.backend_of(tmp_path) == ["setuptools.build_meta:__legacy__"]
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nbackend-path = ["packaging"]\nbuild-backend = "_pyyaml_pep517"\n')
    assert sides.backend_of(tmp_path) == ["_pyyaml_pep517", "packaging"]
    assert sides.hook(tmp_path, tmp_path / "out")[2:] == ["_pyyaml_pep517", str(tmp_path / "out"), "packaging"]


@pytest.mark.integration
@pytest.mark.slow
def test_emulated_build_makes_an_arm_wheel_with_the_armhf_gcc(fresh_project: Project) -> None:
    """Unpacks gcc-12:armhf into a bench sysroot (first time: ~70 MB of .debs) and builds markupsafe."""
    target = fresh_project.targets.select(["bookworm-armhf"])[0]
    recipe = fresh_project.recipe("markupsafe")
    with tempfile.TemporaryDirectory() as tmp:
        result = sides.emulated_build(recipe, target, fresh_project.layout, Path(tmp))
        log = next(Path(tmp).glob("*/emulated.log")).read_text()
    assert result.machine == "ARM" and result.wheel.endswith("linux_armv7l.whl"), log
    compile_line = next(line for line in log.splitlines() if " -c src/markupsafe/_speedups.c" in line)
    assert "qemu-wrappers" in compile_line and " -O2" in compile_line  # the target's own CFLAGS
    tc = sides.emulated_toolchain(recipe, target, fresh_project.layout)
    assert (tc.sysroot / "usr" / "lib" / "gcc" / target.triplet / "12" / "cc1").is_file()
    script = (fresh_project.layout.cache / "bench" / "qemu-wrappers" / tc.sysroot.name / "cc1").read_text()
    assert "qemu-arm" in script and str(tc.sysroot) in script
    assert result.seconds > 0
    json.dumps(result.__dict__)


def test_markdown_without_the_emulated_side() -> None:
    results = json.loads(json.dumps(RESULTS))
    row = results["ab"]["rows"]["markupsafe"]
    del row["emulated"], row["emulated_vs_cross"]
    results["ab"]["emulated_vs_cross"] = {"per_package": {}, "geomean": 0.0}
    md = run.markdown(results)
    assert "| markupsafe | 2.0 s | - | 1.0 s | - | 2.0x |" in md
    assert "emulated/cross" not in md and "cross/native **2.0x**" in md


def test_smoke_bench_table_shows_each_wheel_beside_the_bare_start() -> None:
    import smoke_bench

    results = {"date": "2026-01-01 00:00 UTC", "rounds": 3, "cpus": 2, "load": [1.0, 2.0],
               "rows": [{"target": "bookworm-armhf", "wheel": "m-1-cp311-cp311-linux_armv7l.whl", "bare_start_s": 0.3,
                         "earlier_s": 2.5, "cold_s": 0.9, "warm_s": 0.4, "passed": True},
                        {"target": "bookworm-armhf", "wheel": "(all 1 in one run)", "bare_start_s": 0.3,
                         "earlier_s": 2.5, "cold_s": 0.9, "warm_s": 0.4, "passed": None}],
               "per_wheel": {"earlier_s": 2.5, "cold_s": 0.9, "warm_s": 0.4}}
    md = smoke_bench.markdown(results)
    assert md.startswith(smoke_bench.START) and md.endswith(smoke_bench.END)
    assert "| bookworm-armhf | m-1-cp311-cp311-linux_armv7l.whl | 0.30 s | 2.50 s | 0.90 s | 0.40 s |" in md
    assert "load average of 1.0 (start) / 2.0 (end)" in md and "warm **0.4 s**" in md
