from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ot2wheels import ledger as ledger_mod
from ot2wheels.build import BuildResult
from ot2wheels.errors import LedgerError
from ot2wheels.gate import GateReport
from ot2wheels.ledger import Ledger
from ot2wheels.pipeline import Project
from ot2wheels.records import BuildRecord
from ot2wheels.smoke import SmokeResult


def _result(fresh_project: Project, tmp_path: Path, status: str = "passed", duration: float = 3.5) -> BuildResult:
    recipe = fresh_project.recipe("markupsafe")
    target = fresh_project.targets.select(["bookworm-armhf"])[0]
    rec = BuildRecord(target=target.name, python=target.python, project=recipe.name, version=recipe.version,
                      result=status, cache_key="k1", recipe_digest=recipe.digest, toolchain_digest="t",
                      duration_s=duration, log="markupsafe-3.0.4-cp311.log",
                      wheel=None if status == "failed" else "markupsafe-3.0.4-cp311-cp311-linux_armv7l.whl",
                      wheel_sha256=None if status == "failed" else "ab" * 32,
                      wheel_size=None if status == "failed" else 12345,
                      gate=None if status == "failed" else GateReport("w.whl", True, ["1 ELF file(s) ok"], []),
                      error="build failed (exit 1)" if status == "failed" else None)
    record_path = tmp_path / "dist" / target.name / recipe.name / "markupsafe-3.0.4-cp311.json"
    return BuildResult(recipe, target, rec, record_path, None)


def test_fresh_ledger_has_current_schema(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite")
    assert led.version() == ledger_mod.SCHEMA_VERSION == 3
    db = sqlite3.connect(tmp_path / "l.sqlite")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "builds", "smokes", "runs"} <= tables
    assert Ledger(tmp_path / "l.sqlite").version() == ledger_mod.SCHEMA_VERSION  # reopening does not re-run migrations


def test_migrates_a_version_1_ledger_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    ledger_mod._v1(db)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("INSERT INTO builds (finished_at, package, version, target, python, status, duration_s) "
               "VALUES (1, 'old', '1.0', 'bookworm-armhf', '3.11', 'passed', 2.0)")
    db.execute("COMMIT")
    db.close()
    led = Ledger(path)
    assert led.version() == ledger_mod.SCHEMA_VERSION
    rows = led.builds()
    assert [(r["package"], r["status"], r["run_id"]) for r in rows] == [("old", "passed", None)]
    assert led.runs() == []


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    Ledger(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="schema version 99"):
        Ledger(path)


def test_records_builds_and_smokes(fresh_project: Project, tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite")
    run = led.start_run("nox -s build", jobs=2)
    led.record_build(_result(fresh_project, tmp_path, "passed", 3.5), 3.6, run)
    led.record_build(_result(fresh_project, tmp_path, "reused", 3.5), 0.01, run)
    led.record_build(_result(fresh_project, tmp_path, "failed", 1.0), 1.1, run)
    target = fresh_project.targets.select(["bookworm-armhf"])[0]
    led.record_smoke(fresh_project.recipe("markupsafe"), target,
                     SmokeResult("markupsafe-3.0.4-cp311-cp311-linux_armv7l.whl", target.name, True, 1.5, "ok"), run)
    rows = led.builds()
    assert [r["status"] for r in rows] == ["passed", "reused", "failed"]
    assert rows[0]["wheel_size"] == 12345 and rows[0]["wheel_sha256"] == "ab" * 32
    assert rows[1]["duration_s"] == 0.01 and rows[1]["build_duration_s"] == 3.5
    assert rows[2]["gate_passed"] is None and rows[2]["error"].startswith("build failed")
    assert rows[0]["gate_passed"] == 1 and "ELF" in rows[0]["gate_json"]
    assert rows[0]["log_path"].endswith("bookworm-armhf/markupsafe/markupsafe-3.0.4-cp311.log")
    assert {r["run_id"] for r in rows} == {run}
    assert [r["status"] for r in led.latest_builds()] == ["failed"]
    assert led.last_real_build("markupsafe", "bookworm-armhf", "k1")["id"] == rows[0]["id"]
    smokes = led.smokes()
    assert [(s["package"], s["status"], s["duration_s"]) for s in smokes] == [("markupsafe", "passed", 1.5)]
    assert led.runs()[0]["command"] == "nox -s build" and led.runs()[0]["jobs"] == 2


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite")
    with pytest.raises(RuntimeError), led.connect() as db:
        db.execute("INSERT INTO runs (started_at, command, host) VALUES (1, 'x', 'h')")
        raise RuntimeError("interrupted")
    assert led.runs() == []


def test_rejects_an_unknown_status(tmp_path: Path, fresh_project: Project) -> None:
    led = Ledger(tmp_path / "l.sqlite")
    with pytest.raises(ValueError, match="'maybe' is not a valid Outcome"):
        _result(fresh_project, tmp_path, "maybe")  # a record holds an Outcome
    res = _result(fresh_project, tmp_path, "passed")
    res.record.result = "maybe"  # type: ignore[assignment]  # what a foreign writer could send
    with pytest.raises(LedgerError, match="CHECK constraint"):
        led.record_build(res, 1.0)


def test_default_path_is_in_dist_unless_overridden(fresh_project: Project, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OT2WHEELS_LEDGER", raising=False)
    assert ledger_mod.default_path(fresh_project.layout) == fresh_project.layout.dist / "ledger.sqlite"
    monkeypatch.setenv("OT2WHEELS_LEDGER", str(tmp_path / "x.sqlite"))
    assert ledger_mod.default_path(fresh_project.layout) == tmp_path / "x.sqlite"


def test_merge_keeps_every_matrix_jobs_rows_in_time_order(fresh_project: Project, tmp_path: Path) -> None:
    """Issue 12 item 5: one ledger per CI matrix job, merged (not overwritten) into one. The newest
    row still wins per (package, target), a ledger merged twice counts once, logs are found in the
    merged dist/, and the CLI does it."""
    import subprocess
    import sys
    import time

    job_a, job_b = Ledger(tmp_path / "a.sqlite"), Ledger(tmp_path / "b.sqlite")
    run_a = job_a.start_run("nox -s build-markupsafe")
    job_a.record_build(_result(fresh_project, tmp_path, "passed", 3.0), 3.0, run_a)
    time.sleep(0.01)
    run_b = job_b.start_run("nox -s build-markupsafe")
    job_b.record_build(_result(fresh_project, tmp_path, "failed", 1.0), 1.0, run_b)  # newer: it wins
    job_b.record_smoke(fresh_project.recipe("markupsafe"), fresh_project.targets.get("bookworm-armhf"),
                       SmokeResult("markupsafe-3.0.4-cp311-cp311-linux_armv7l.whl", "bookworm-armhf", True, 2.0, "ok"),
                       run_b)
    dist = tmp_path / "merged-dist"
    log = dist / "bookworm-armhf" / "markupsafe" / "markupsafe-3.0.4-cp311.log"
    log.parent.mkdir(parents=True)
    log.write_text("# build log\n")
    out = tmp_path / "merged.sqlite"
    assert ledger_mod.merge([job_b.path, job_a.path, job_b.path], out, dist=dist) == (2, 1)
    merged = Ledger(out)
    assert [b["status"] for b in merged.builds()] == ["passed", "failed"]  # time order, not argument order
    (latest,) = merged.latest_builds()
    assert latest["status"] == "failed" and latest["log_path"] == str(log)
    assert len(merged.runs()) == 2 and len(merged.smokes()) == 1
    assert ledger_mod.merge([job_a.path], out) == (2, 1)  # merging again adds nothing
    with pytest.raises(LedgerError, match=r"nope\.sqlite: no such ledger"):
        ledger_mod.merge([tmp_path / "nope.sqlite"], out)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(root), "ledger.merge",
                           "--source", str(job_a.path), "--source", str(job_b.path), "--out", str(tmp_path / "cli.sqlite")],
                          capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "2 builds and 1 smoke tests from 2 ledger(s)" in proc.stdout
    assert [b["status"] for b in Ledger(tmp_path / "cli.sqlite").builds()] == ["passed", "failed"]


def test_full_disk_says_disk_full_not_damaged(small_disk) -> None:
    """On a full disk the ledger is intact: the message says "disk full", and once there is
    room again the same file works with every earlier row."""
    disk = small_disk(256)
    ledger = Ledger(disk / "ledger.sqlite")
    first = ledger.start_run("before the disk filled")
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # take every free block
        while os.write(fd, b"\1" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(LedgerError) as exc:
        ledger.start_run("x" * 200_000)
    msg = str(exc.value)
    assert msg.startswith(f"disk full at {disk}") and "intact" in msg and "damaged" not in msg
    filler.unlink()
    ledger.start_run("after")
    assert [r["command"] for r in ledger.runs()] == ["before the disk filled", "after"] and first == 1


def test_damaged_file_still_says_damaged(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match=r"is damaged .*move it away"):
        Ledger(path)
