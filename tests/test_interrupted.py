"""Interrupted runs: a build killed with -9 leaves no child running; the next run sweeps
the work dirs and half-assembled trees it left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ot2wheels import locks, stale

BACKEND = '''
import os, subprocess, time
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    sleeper = subprocess.Popen(["sleep", "300"])
    with open(os.environ["PIDS_FILE"], "w") as f:
        f.write(f"{os.getppid()} {os.getpid()} {sleeper.pid}\\n")
    time.sleep(300)
'''

DRIVER = '''
import sys
from pathlib import Path
from ot2wheels.build import pep517_wheel
tree, out, log, pids = map(Path, sys.argv[1:5])
pep517_wheel(tree, Path(sys.executable), {"PIDS_FILE": str(pids)}, out, log)
'''


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_killed_build_leaves_no_child_running(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "slowbackend"\nbackend-path = ["."]\n')
    (tree / "slowbackend.py").write_text(textwrap.dedent(BACKEND))
    pids_file = tmp_path / "pids"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tree), str(tmp_path / "out"),
                               str(tmp_path / "build.log"), str(pids_file)])
    try:
        deadline = time.monotonic() + 60
        while not pids_file.is_file() or not pids_file.read_text().endswith("\n"):
            assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "build.log").read_text()
            time.sleep(0.1)
        frontend, backend, sleeper = map(int, pids_file.read_text().split())
        assert all(_alive(p) for p in (frontend, backend, sleeper))
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in (frontend, backend, sleeper)) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in (frontend, backend, sleeper) if _alive(p)]
    for p in survivors:  # do not leave them running when the test fails
        os.kill(p, signal.SIGKILL)
    assert survivors == [], "the build frontend, its backend or the compiler it started outlived kill -9"


HOLD = '''
import sys, time
from pathlib import Path
from ot2wheels import locks, stale
fds = [locks.hold(Path(p)) for p in sys.argv[1:]]
print("held", flush=True)
time.sleep(300)
'''


def test_stale_work_dirs_and_tmp_sysroots_are_removed_by_the_next_run(project_root: Path, tmp_path: Path) -> None:
    from ot2wheels.paths import Layout
    from ot2wheels.pipeline import Project, build_all

    cache = tmp_path / "cache"
    old = time.time() - 3600
    made = {
        "work/tiny-1.0-cp311.abcd1234": False,  # a killed build's work dir: removed
        "work/tiny-1.0-cp311.live0001": True,  # a live build's (locked): kept
        "sysroots/.bookworm-armhf-0123456789abcdef.k2j4h5g6": False,  # half-assembled: removed
        "sysroots/.bullseye-armhf-0123456789abcdef.zz99yy88": True,  # being assembled: kept
        "sysroots/bookworm-armhf-0123456789abcdef": True,  # a finished sysroot: kept
        "buildenvs/.py3.11-0123456789abcdef.a1b2c3d4": False,
    }
    made["work/tiny-1.0-cp311.legacy01"] = True  # no mark: an older version's, maybe live: kept
    for rel in made:
        (cache / rel / "sub").mkdir(parents=True)
        (cache / rel / "sub" / "f").write_text("x")
        if rel.startswith("work/") and not rel.endswith("legacy01"):
            (cache / rel / stale.WORK_MARK).touch()
        os.utime(cache / rel, (old, old))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(cache / "work/tiny-1.0-cp311.live0001"),
         str(_touch(locks.lock_path(cache, "sysroot-bullseye-armhf-0123456789abcdef")))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        project = Project.load(Layout(root=project_root, cache=cache, dist=tmp_path / "dist"))
        lines: list[str] = []
        assert build_all(project, [], say=lines.append) == []
    finally:
        holder.kill()
        holder.wait()
    assert {rel: (cache / rel).exists() for rel in made} == made
    assert any("leftover(s) of interrupted runs" in line for line in lines)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def test_timeout_ends_the_whole_group(tmp_path: Path) -> None:
    from ot2wheels import procgroup

    pid_file = tmp_path / "pid"
    script = f"sleep 300 & echo $! > {pid_file}; wait"
    try:
        procgroup.run(["sh", "-c", script], timeout=1)
        raise AssertionError("no timeout")
    except subprocess.TimeoutExpired:
        pass
    sleeper = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(sleeper)
    assert procgroup.run(["sh", "-c", "exit 3"]).returncode == 3


def test_build_time_limit_stops_the_backend_and_its_children(tmp_path: Path) -> None:
    """`invoke survey --build-timeout`: a build over the limit fails with `timeout:`, and nothing
    of it (frontend, backend, the compiler it started) runs on."""
    import pytest

    from ot2wheels.build import pep517_wheel
    from ot2wheels.errors import BuildError

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "slowbackend"\nbackend-path = ["."]\n')
    (tree / "slowbackend.py").write_text(textwrap.dedent(BACKEND))
    pids_file, log = tmp_path / "pids", tmp_path / "build.log"
    started = time.monotonic()
    with pytest.raises(BuildError, match=r"^timeout: build stopped after the time limit of 0\.2 min"):
        pep517_wheel(tree, Path(sys.executable), {"PIDS_FILE": str(pids_file)}, tmp_path / "out", log, timeout_s=12)
    assert time.monotonic() - started < 30
    assert "# stopped: the build time limit of 0.2 min was reached" in log.read_text()
    pids = list(map(int, pids_file.read_text().split()))
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in pids if _alive(p)]
    for p in survivors:
        os.kill(p, signal.SIGKILL)
    assert survivors == []
