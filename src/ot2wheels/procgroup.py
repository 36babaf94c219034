"""Run a child command so that nothing of it outlives us, not even after `kill -9`.

The command runs in its own process group under a tiny supervisor (this file, run as a
script by the same interpreter). The supervisor asks Linux to signal it when its parent dies
(`prctl(PR_SET_PDEATHSIG)`), and on that signal, on Ctrl-C (it stays in the terminal's
process group) or on SIGTERM it kills the command's whole group (the build frontend, its
backend, the compilers) and exits. When the command ends normally, leftovers of its group
are killed too. The supervisor imports nothing beyond the standard library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


def run(cmd: list[str], timeout: float | None = None, **popen: Any) -> subprocess.CompletedProcess:
    """Run `cmd` to the end (Popen keywords: cwd, env, stdout, ...), it and its descendants dying
    with this process; a timeout or an exception here (Ctrl-C) ends the whole group too."""
    supervised = [sys.executable, "-I", "-S", str(Path(__file__).resolve()), str(os.getpid()), *cmd]
    with subprocess.Popen(supervised, **popen) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            proc.terminate()  # the supervisor kills the command's group, then exits
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _supervise(parent: int, cmd: list[str]) -> int:
    child: list[subprocess.Popen] = []

    def stop(signum: int, _frame: object = None) -> None:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child[0].pid, signal.SIGKILL)
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: Ctrl-C and SIGTERM still reach the group
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        stop(signal.SIGTERM)
    try:
        child.append(subprocess.Popen(cmd, process_group=0))
    except OSError as exc:
        print(f"cannot run {cmd[0]}: {exc}", file=sys.stderr)
        return 127
    code = child[0].wait()
    with contextlib.suppress(ProcessLookupError):  # nothing of the group outlives the command
        os.killpg(child[0].pid, signal.SIGKILL)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(_supervise(int(sys.argv[1]), sys.argv[2:]))
