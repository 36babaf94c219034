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

from ot2wheels import locks

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
