"""Issue 12 item 6: a live status line with the step and elapsed time on a terminal; plain lines
with the elapsed time in a pipe or under CI=true."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time

from ot2wheels.progress import live_wanted, status


def test_plain_lines_when_not_a_terminal_or_under_ci():
    out = io.StringIO()
    with status("invoke plan", stream=out) as step:
        step("resolving prefect for ot2")
        time.sleep(0.2)
        step("resolved")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("] resolving prefect for ot2") and lines[0].startswith("[")
    assert 0.2 <= float(lines[1][1:].split("s]")[0]) < 5  # the elapsed time, in seconds
    assert "\x1b[" not in out.getvalue()  # no terminal control codes in logs
    r, w = pty.openpty()
    with os.fdopen(w, "w") as tty:
        assert live_wanted(tty, {}) and not live_wanted(tty, {"CI": "true"})
    os.close(r)


def test_live_status_line_on_a_terminal_shows_step_and_elapsed_time():
    """A real pseudo-terminal: the status line (spinner, step, elapsed h:mm:ss) is drawn and
    updated while the step lines scroll above it."""
    code = ("import time; from ot2wheels.progress import status\n"
            "with status('invoke build') as step:\n"
            "    step('[bookworm-armhf] markupsafe: building')\n"
            "    time.sleep(1.5)\n")
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks += data
    proc.wait(timeout=30)
    os.close(master)
    text = chunks.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "[bookworm-armhf] markupsafe: building" in text
    assert "invoke build: [bookworm-armhf] markupsafe: building" in text  # the status line
    assert "0:00:01" in text  # elapsed time, updated while waiting
