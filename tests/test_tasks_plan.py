"""`invoke plan` end to end against the real index (metadata cached under the user cache dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=600)


def must_build_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("must build:"))


@pytest.mark.integration
def test_plan_task_must_build_differs_between_bookworm_and_ot2(tmp_path: Path) -> None:
    cons = "packages/prefect/constraints.txt"
    bw = invoke("plan", "prefect==3.3.4", "--target", "bookworm-armhf", "--constraints", cons,
                "--json", str(tmp_path / "bw.json"), "--out-constraints", str(tmp_path / "bw.txt"))
    ot2 = invoke("plan", "prefect==3.3.4", "--target", "ot2", "--constraints", cons,
                 "--json", str(tmp_path / "ot2.json"), "--out-constraints", str(tmp_path / "ot2.txt"))
    assert bw.returncode == 0, bw.stderr
    assert ot2.returncode == 0, ot2.stderr
    assert "cryptography==" in must_build_line(ot2.stdout)
    assert "cryptography==" not in must_build_line(bw.stdout)
    assert must_build_line(bw.stdout) != must_build_line(ot2.stdout)
    data = json.loads((tmp_path / "ot2.json").read_text())
    assert sorted(e["name"] for e in data["entries"] if e["bucket"] == "must-build") == \
        ["asyncpg", "cffi", "cryptography", "greenlet", "pyyaml", "regex", "ujson"]
    assert "prefect==3.3.4" in (tmp_path / "ot2.txt").read_text()


def test_plan_task_unknown_target_is_one_line_error() -> None:
    r = invoke("plan", "prefect==3.3.4", "--target", "nope")
    assert r.returncode == 1
    assert "no target named 'nope'" in r.stderr and "Traceback" not in r.stderr
