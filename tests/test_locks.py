from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from ot2wheels import locks


def test_lock_excludes_other_threads(tmp_path: Path) -> None:
    inside: list[int] = []
    overlaps: list[int] = []

    def worker(i: int) -> None:
        with locks.cache_lock(tmp_path, "shared"):
            inside.append(i)
            if len(inside) > 1:
                overlaps.append(i)
            time.sleep(0.05)
            inside.remove(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_lock_excludes_other_processes_and_says_it_waits(tmp_path: Path) -> None:
    path = locks.lock_path(tmp_path, "sysroot-x")
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from ot2wheels import locks; "
            "from pathlib import Path\nwith locks.locked(Path(sys.argv[2])):\n print('held', flush=True); time.sleep(0.6)")
    src = Path(__file__).resolve().parents[1] / "src"
    child = subprocess.Popen([sys.executable, "-c", code, str(src), str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout and child.stdout.readline().strip() == "held"
    said: list[str] = []
    started = time.monotonic()
    with locks.locked(path, "sysroot-x", said.append):
        waited = time.monotonic() - started
    child.wait()
    assert waited > 0.3
    assert said and "sysroot-x" in said[0]


def test_lock_is_reentrant_in_one_thread(tmp_path: Path) -> None:
    with locks.cache_lock(tmp_path, "a"):
        with locks.cache_lock(tmp_path, "a"):  # would deadlock with plain flock on a new fd
            pass
    assert locks.lock_path(tmp_path, "a").parent == tmp_path / "locks"


def test_distinct_names_get_distinct_files(tmp_path: Path) -> None:
    assert locks.lock_path(tmp_path, "x/y") != locks.lock_path(tmp_path, "x_y")
