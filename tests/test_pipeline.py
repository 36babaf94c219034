from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from ot2wheels import pipeline
from ot2wheels.ledger import Ledger
from ot2wheels.pipeline import Project


def test_make_jobs_split_among_concurrent_builds() -> None:
    assert pipeline.make_jobs_per_build(2, 14, cores=2) == 1
    assert pipeline.make_jobs_per_build(1, 14, cores=8) == 8
    assert pipeline.make_jobs_per_build(4, 2, cores=8) == 4  # only 2 builds run at once
    assert pipeline.make_jobs_per_build(16, 16, cores=4) == 1


def test_serialized_say_keeps_lines_whole() -> None:
    out: list[str] = []

    def slow_say(line: str) -> None:  # a writer that would interleave if called concurrently
        for ch in line:
            out.append(ch)
            time.sleep(0.0001)
        out.append("\n")

    say = pipeline.serialized(slow_say)
    threads = [threading.Thread(target=lambda i=i: [say(f"[b{i}] step {k}") for k in range(5)])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = "".join(out).splitlines()
    assert len(lines) == 20
    assert all(re.fullmatch(r"\[b\d\] step \d", line) for line in lines)


@pytest.mark.integration
def test_parallel_build_then_reuse(fresh_project: Project, tmp_path: Path) -> None:
    """Two builds at once, separate logs, prefixed lines; the second run reuses both; all in the ledger."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    pairs = fresh_project.matrix(["markupsafe"])
    assert len(pairs) == 2
    lines: list[str] = []
    started = time.monotonic()
    first = pipeline.build_all(fresh_project, pairs, say=lines.append, jobs=2, ledger=ledger)
    cold = time.monotonic() - started
    assert [b.record.result for b in first] == ["passed", "passed"], [b.record.error for b in first]
    logs = {b.record_path.with_suffix(".log") for b in first}
    assert len(logs) == 2 and all(p.is_file() for p in logs)
    for b in first:  # each log holds only its own build
        text = b.record_path.with_suffix(".log").read_text()
        assert b.target.cp in text and ({t.cp for _r, t in pairs} - {b.target.cp}).pop() not in text.split("\n", 1)[0]
    assert any(line.startswith("building 2 wheels, 2 at a time") for line in lines)
    assert all(line.startswith(("[", "building")) for line in lines), lines
    assert any(line.startswith("[bookworm-armhf] markupsafe") for line in lines)
    assert any(line.startswith("[bullseye-armhf] markupsafe") for line in lines)

    started = time.monotonic()
    second = pipeline.build_all(fresh_project, pairs, say=lines.append, jobs=2, ledger=ledger)
    warm = time.monotonic() - started
    assert [b.record.result for b in second] == ["reused", "reused"]
    assert [b.wheel for b in second] == [b.wheel for b in first]
    summary = pipeline.reuse_summary(second, warm)
    assert "2 reused" in summary and "reused markupsafe 3.0.4 for bookworm-armhf" in summary
    assert warm < cold / 5, (cold, warm)

    rows = ledger.builds()
    assert sorted((r["target"], r["status"]) for r in rows) == [
        ("bookworm-armhf", "passed"), ("bookworm-armhf", "reused"),
        ("bullseye-armhf", "passed"), ("bullseye-armhf", "reused")]
    for r in rows:
        assert r["wheel_sha256"] and r["wheel_size"] > 1000 and Path(r["log_path"]).is_file()

    smokes = pipeline.smoke_all(fresh_project, pairs[:1], say=lines.append, ledger=ledger)
    assert smokes[0][1].passed, smokes[0][1].output
    assert [(s["package"], s["target"], s["status"]) for s in ledger.smokes()] == [
        ("markupsafe", pairs[0][1].name, "passed")]
