"""Real cross builds: a local sdist served over 127.0.0.1, and the repository's own recipes."""

import json
from pathlib import Path

import pytest
from conftest import build_tiny, make_tiny_sdist, serve_directory, sha, write_tiny_recipe

from ot2wheels.build import build_one
from ot2wheels.pipeline import Project, build_all

pytestmark = pytest.mark.integration



def test_cross_build_records_and_reuses(layout, tmp_path: Path) -> None:
    first = build_tiny(layout, tmp_path)
    project = Project.load(layout)
    target = project.targets.get("bookworm-armhf")
    assert first.ok, first.record.error
    assert first.wheel == layout.dist / "bookworm-armhf" / "tiny" / "tiny-1.0-cp311-cp311-linux_armv7l.whl"
    record = json.loads(first.record_path.read_text())
    assert record["wheel_sha256"] == sha(first.wheel)
    assert record["target"] == "bookworm-armhf" and record["python"] == "3.11"
    assert record["recipe_digest"] == project.recipe("tiny").digest and len(record["toolchain_digest"]) == 64
    assert record["gate"]["passed"] and (first.record_path.parent / record["log"]).is_file()
    assert "arm-linux-gnueabihf-gcc" in (first.record_path.parent / record["log"]).read_text()
    # Unchanged inputs: reused without a rebuild (and without the server).
    again = build_one(project.recipe("tiny"), target, layout, say=lambda s: None)
    assert again.record.result == "reused" and again.wheel == first.wheel


def test_failed_compile_keeps_its_log_and_the_next_build_goes_on(layout, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    broken = make_tiny_sdist(tmp_path / "b", version="2.0", body="this is not C;")
    good = make_tiny_sdist(tmp_path, version="1.0")
    with serve_directory(tmp_path) as url:
        write_tiny_recipe(layout.packages, f"{url}/b/{broken.name}", sha(broken), version="2.0", name="broken")
        write_tiny_recipe(layout.packages, f"{url}/{good.name}", sha(good))
        project = Project.load(layout)
        pairs = project.matrix(["broken", "tiny"], ["bullseye-armhf"])
        results = build_all(project, pairs, say=lambda s: None)
    bad, ok = results
    assert not bad.ok and ok.ok
    assert "build failed" in bad.record.error and str(bad.record_path.with_suffix(".log")) in bad.record.error
    log = bad.record_path.with_suffix(".log").read_text()
    assert "this is not C" in log and "error" in log
    assert json.loads(bad.record_path.read_text())["result"] == "failed"


def test_tampered_sdist_fails_the_build_with_a_clear_record(layout, tmp_path: Path) -> None:
    sdist = make_tiny_sdist(tmp_path)
    pinned = sha(sdist)
    sdist.write_bytes(sdist.read_bytes() + b"\0")
    with serve_directory(tmp_path) as url:
        write_tiny_recipe(layout.packages, f"{url}/{sdist.name}", pinned)
        project = Project.load(layout)
        result = build_one(project.recipe("tiny"), project.targets.get("bookworm-armhf"), layout,
                           say=lambda s: None)
    assert not result.ok and "sha256 mismatch" in result.record.error
    assert result.wheel is None and not list(result.record_path.parent.glob("*.whl"))


def test_rejected_then_failed_rebuild_leaves_no_publishable_wheel(layout, tmp_path: Path) -> None:
    """A wheel rejected by its smoke test, then a failed rebuild of the same build: dist/ must
    not keep the old wheel beside a record that no longer names it."""
    from ot2wheels.pipeline import smoke_all

    sdist = make_tiny_sdist(tmp_path)
    with serve_directory(tmp_path) as url:
        recipe = write_tiny_recipe(layout.packages, f"{url}/{sdist.name}", sha(sdist))
        recipe.write_text(recipe.read_text().replace("== 42", "== 43"))  # a smoke test that fails
        project = Project.load(layout)
        target = project.targets.get("bookworm-armhf")
        built = build_one(project.recipe("tiny"), target, layout, say=lambda s: None)
        assert built.ok and built.wheel.is_file()
        [(_, smoke)] = smoke_all(project, [(project.recipe("tiny"), target)], say=lambda s: None)
        assert not smoke.passed and json.loads(built.record_path.read_text())["smoke"]["passed"] is False
        # the rebuild fails (the pinned hash no longer matches what is served)
        recipe.write_text(recipe.read_text().replace(sha(sdist), "0" * 64))
        project = Project.load(layout)
        again = build_one(project.recipe("tiny"), target, layout, say=lambda s: None)
    record = json.loads(again.record_path.read_text())
    assert record["result"] == "failed" and record["wheel"] is None
    assert list(again.record_path.parent.glob("*.whl")) == []


def test_disk_full_dist_on_tmpfs_gives_a_failed_record(layout, tmp_path: Path, small_disk) -> None:
    """The wheel (~400 KB) does not fit dist/ (a 200 KiB tmpfs): a failed one-line record, no
    half-written wheel under any name."""
    from ot2wheels.paths import Layout

    dist = small_disk(200)
    layout = Layout(root=layout.root, cache=layout.cache, dist=dist)
    result = build_tiny(layout, tmp_path, payload=400_000)
    assert not result.ok and result.wheel is None
    error = result.record.error
    assert error.startswith(f"disk full at {dist}/bookworm-armhf/tiny/") and "\n" not in error
    record = json.loads(result.record_path.read_text())
    assert record["result"] == "failed" and record["error"] == error
    left = sorted(p.name for p in result.record_path.parent.iterdir())
    assert left == ["tiny-1.0-cp311.json", "tiny-1.0-cp311.log"]
