"""The build ledger: every build and smoke test, in an embedded SQLite database.

Where: `dist/ledger.sqlite` by default (beside the records and logs it points to, so a CI
artifact of dist/ carries its history), or the `OT2WHEELS_LEDGER` path, or `--ledger PATH`.

Writes are SQLite transactions (atomic; WAL journal, so readers never see a half-written run).
Only the coordinating thread writes: the pipeline records each build as it completes.

The schema is versioned: `schema_version` holds the number of migrations applied, and
`MIGRATIONS[i]` takes a database from version i to i+1. Add a migration at the end; never
edit one that has shipped.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LedgerError
from .paths import Layout

if TYPE_CHECKING:
    from .build import BuildResult
    from .recipes import Recipe
    from .smoke import SmokeResult
    from .targets import Target

FILENAME = "ledger.sqlite"


def default_path(layout: Layout) -> Path:
    """OT2WHEELS_LEDGER if set, else dist/ledger.sqlite."""
    if env := os.environ.get("OT2WHEELS_LEDGER"):
        return Path(env).expanduser().resolve()
    return layout.dist / FILENAME


def _v1(db: sqlite3.Connection) -> None:
    _script(db, """
        CREATE TABLE builds (
            id INTEGER PRIMARY KEY,
            finished_at REAL NOT NULL,          -- unix time
            package TEXT NOT NULL, version TEXT NOT NULL,
            target TEXT NOT NULL, python TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('passed', 'failed', 'reused')),
            duration_s REAL NOT NULL,           -- wall time of this step (a reuse takes ~0)
            build_duration_s REAL,              -- the cross build that made the wheel
            wheel TEXT, wheel_sha256 TEXT, wheel_size INTEGER,
            log_path TEXT,                      -- absolute path of the build log
            cache_key TEXT,
            gate_passed INTEGER,                -- NULL when the build never reached the gate
            gate_json TEXT NOT NULL DEFAULT '{}',
            error TEXT
        );
        CREATE TABLE smokes (
            id INTEGER PRIMARY KEY,
            finished_at REAL NOT NULL,
            package TEXT NOT NULL, version TEXT NOT NULL,
            target TEXT NOT NULL, python TEXT NOT NULL,
            wheel TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('passed', 'failed')),
            duration_s REAL NOT NULL,
            output TEXT NOT NULL DEFAULT ''
        );
    """)


def _v2(db: sqlite3.Connection) -> None:
    """Runs: which invocation made each row (command, --jobs, host), and lookup indexes."""
    _script(db, """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            command TEXT NOT NULL,
            jobs INTEGER,
            host TEXT NOT NULL
        );
        ALTER TABLE builds ADD COLUMN run_id INTEGER REFERENCES runs(id);
        ALTER TABLE smokes ADD COLUMN run_id INTEGER REFERENCES runs(id);
        CREATE INDEX builds_by_pair ON builds (package, target, id);
        CREATE INDEX smokes_by_pair ON smokes (package, target, id);
    """)


def _v3(db: sqlite3.Connection) -> None:
    """When each run finished and how many failures it reported (NULL: still running, or killed)."""
    _script(db, """
        ALTER TABLE runs ADD COLUMN finished_at REAL;
        ALTER TABLE runs ADD COLUMN failures INTEGER;
    """)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class Ledger:
    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.migrate()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection whose `with` block is one transaction (committed, or rolled back)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {exc}") from None
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise _ledger_error(self.path, exc) from None
        finally:
            db.close()

    def version(self) -> int:
        with self.connect() as db:
            return _version(db)

    def migrate(self) -> int:
        """Apply the migrations this file has not had yet; returns the schema version."""
        with self.connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = _version(db)
            if current > SCHEMA_VERSION:
                raise LedgerError(f"ledger {self.path} has schema version {current}, newer than this "
                                  f"ot2wheels knows ({SCHEMA_VERSION}); upgrade ot2wheels or use --ledger")
            for step in MIGRATIONS[current:]:
                step(db)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        return SCHEMA_VERSION

    # -- writing ----------------------------------------------------------------------------
    def start_run(self, command: str, jobs: int | None = None) -> int:
        with self.connect() as db:
            cur = db.execute("INSERT INTO runs (started_at, command, jobs, host) VALUES (?, ?, ?, ?)",
                             (time.time(), command, jobs, platform.node()))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, failures: int) -> None:
        with self.connect() as db:
            db.execute("UPDATE runs SET finished_at = ?, failures = ? WHERE id = ?", (time.time(), failures, run_id))

    def record_build(self, result: BuildResult, duration_s: float, run_id: int | None = None) -> int:
        rec = result.record
        log = result.record_path.parent / rec.log
        gate_passed = None if rec.gate is None else int(rec.gate.passed)
        with self.connect() as db:
            cur = db.execute(
                """INSERT INTO builds (finished_at, package, version, target, python, status, duration_s,
                   build_duration_s, wheel, wheel_sha256, wheel_size, log_path, cache_key, gate_passed,
                   gate_json, error, run_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (time.time(), rec.project, rec.version, rec.target, rec.python, rec.result,
                 round(duration_s, 3), rec.duration_s, rec.wheel, rec.wheel_sha256, rec.wheel_size,
                 str(log), rec.cache_key, gate_passed, json.dumps(rec.gate.to_dict() if rec.gate else {}, sort_keys=True), rec.error,
                 run_id),
            )
            return int(cur.lastrowid or 0)

    def record_smoke(self, recipe: Recipe, target: Target, result: SmokeResult,
                     run_id: int | None = None) -> int:
        with self.connect() as db:
            cur = db.execute(
                """INSERT INTO smokes (finished_at, package, version, target, python, wheel, status,
                   duration_s, output, run_id) VALUES (?,?,?,?,?,?,?,?,?,?)""",
                (time.time(), recipe.name, recipe.version, target.name, target.python, result.wheel,
                 result.outcome, result.duration_s, result.output[-4000:], run_id),
            )
            return int(cur.lastrowid or 0)

    # -- reading ----------------------------------------------------------------------------
    def builds(self) -> list[dict]:
        with self.connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM builds ORDER BY id")]

    def smokes(self) -> list[dict]:
        with self.connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM smokes ORDER BY id")]

    def runs(self) -> list[dict]:
        with self.connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY id")]

    def latest_builds(self) -> list[dict]:
        """The newest build row of every (package, target)."""
        with self.connect() as db:
            return [dict(r) for r in db.execute(
                """SELECT * FROM builds WHERE id IN (SELECT MAX(id) FROM builds GROUP BY package, target)
                   ORDER BY package, target""")]

    def latest_smokes(self) -> list[dict]:
        with self.connect() as db:
            return [dict(r) for r in db.execute(
                """SELECT * FROM smokes WHERE id IN (SELECT MAX(id) FROM smokes GROUP BY package, target)
                   ORDER BY package, target""")]

    def slowest_builds(self) -> dict[tuple[str, str, str], float]:
        """(package, target, version) -> the longest passing cross build recorded: the one with
        the fewest compiler-cache hits, the best stand-in for compiling from scratch."""
        with self.connect() as db:
            return {(r[0], r[1], r[2]): r[3] for r in db.execute(
                """SELECT package, target, version, MAX(build_duration_s) FROM builds
                   WHERE status = 'passed' AND build_duration_s IS NOT NULL GROUP BY package, target, version""")}

    def last_real_build(self, package: str, target: str, cache_key: str) -> dict | None:
        """The newest build that actually compiled (passed) the wheel a reuse hands out."""
        with self.connect() as db:
            row = db.execute(
                """SELECT * FROM builds WHERE package = ? AND target = ? AND cache_key = ?
                   AND status = 'passed' ORDER BY id DESC LIMIT 1""", (package, target, cache_key)).fetchone()
            return dict(row) if row else None


def _ledger_error(path: Path, exc: sqlite3.DatabaseError) -> LedgerError:
    """One line for a failed ledger transaction: "damaged" only when SQLite says so."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if code is not None else None
    if primary == sqlite3.SQLITE_FULL or "disk is full" in str(exc) or ("disk I/O error" in str(exc) and _full(path)):
        return LedgerError(f"disk full at {path.parent}: the ledger {path} is intact, but this "
                           "transaction was not recorded; free space there (or use --ledger) and run again")
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return LedgerError(f"ledger {path} is damaged ({exc}); move it away (a new one starts empty)")
    return LedgerError(f"ledger {path}: {exc}")


def _full(path: Path) -> bool:
    try:
        return os.statvfs(path.parent).f_bavail == 0
    except OSError:
        return False


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run `;`-separated statements inside the open transaction (executescript would commit)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _version(db: sqlite3.Connection) -> int:
    try:
        row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)


def merge(sources: list[Path], dest: Path, dist: Path | None = None) -> tuple[int, int]:
    """Merge ledgers (e.g. one per CI matrix job) into a new ledger at `dest`; returns (builds, smokes).

    Rows of every source (and of `dest`, if it exists) are put in time order, so "the newest row
    of each (package, target)" still means the newest build; rows present in several sources (the
    same ledger merged twice) are kept once; runs keep their rows. A log path that does not exist
    here is pointed at `dist/<target>/<package>/<log file name>` when that exists (the matrix jobs'
    dist/ folders are merged there). The new ledger replaces `dest` in one rename.
    """
    inputs = [Path(p) for p in sources]
    if dest.is_file():
        inputs.insert(0, dest)
    for p in inputs:
        if not p.is_file():
            raise LedgerError(f"{p}: no such ledger to merge")
    runs: dict[tuple, dict] = {}
    rows: dict[str, dict[tuple, dict]] = {"builds": {}, "smokes": {}}
    for path in inputs:
        src = Ledger(path)  # migrates an older schema first
        with src.connect() as db:
            run_key = {r["id"]: (r["started_at"], r["command"], r["host"]) for r in db.execute("SELECT * FROM runs")}
            for r in db.execute("SELECT * FROM runs"):
                runs.setdefault(run_key[r["id"]], dict(r))
            for table in rows:
                for r in db.execute(f"SELECT * FROM {table}"):
                    row = dict(r)
                    row["run_key"] = run_key.get(row.pop("run_id"))
                    row.pop("id")
                    key = tuple(sorted((k, v) for k, v in row.items() if k != "log_path"))
                    rows[table].setdefault(key, row)
    tmp = dest.with_name(f".{dest.name}.merge-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        out = Ledger(tmp)
        with out.connect() as db:
            run_id = {}
            for key, r in sorted(runs.items(), key=lambda kv: kv[1]["started_at"]):
                cur = db.execute("INSERT INTO runs (started_at, command, jobs, host) VALUES (?, ?, ?, ?)",
                                 (r["started_at"], r["command"], r["jobs"], r["host"]))
                run_id[key] = cur.lastrowid
            for table, items in rows.items():
                for r in sorted(items.values(), key=lambda r: r["finished_at"]):
                    r = dict(r)
                    r["run_id"] = run_id.get(r.pop("run_key"))
                    if table == "builds" and dist is not None and r["log_path"] and not Path(r["log_path"]).is_file():
                        moved = dist / r["target"] / r["package"] / Path(r["log_path"]).name
                        if moved.is_file():
                            r["log_path"] = str(moved)
                    cols = ", ".join(r)
                    db.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(r))})",
                               tuple(r.values()))
        for suffix in ("-wal", "-shm"):  # a closed WAL database is whole in its main file
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(rows["builds"]), len(rows["smokes"])
