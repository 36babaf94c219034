"""End to end as a user runs it: `nox -s build` twice (the second reuses everything), the
ledger has both runs, `invoke report` renders them. Real nox, real invoke, real cross builds of
a tiny sdist served on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, make_tiny_sdist, serve_directory, sha, write_tiny_recipe

from ot2wheels.ledger import Ledger

SUMMARY = re.compile(r"(\d+) build\(s\) in ([\d.]+)s: (\d+) built, (\d+) reused from the cache, (\d+) failed")


@pytest.mark.integration
def test_second_build_reuses_everything_and_report_shows_it(tmp_path: Path, cache_dir: Path,
                                                            checkout_copy: Path) -> None:
    root = checkout_copy
    (tmp_path / "srv").mkdir()
    sdist = make_tiny_sdist(tmp_path / "srv")
    env = {**os.environ, "OT2WHEELS_CACHE": str(cache_dir), "PYTHONPATH": str(REPO / "src")}
    env.pop("OT2WHEELS_LEDGER", None)

    def nox_build() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nox", "-s", "build", "--", "--jobs", "2"], cwd=root,
                              capture_output=True, text=True, env=env)

    with serve_directory(tmp_path / "srv") as url:
        write_tiny_recipe(root / "packages", f"{url}/{sdist.name}", sha(sdist))
        first = nox_build()
        second = nox_build()
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "building 2 wheels, 2 at a time, 1 compile job(s) each" in first.stderr
    (n1, _t1, built1, reused1, failed1), = SUMMARY.findall(first.stderr)
    (n2, _t2, built2, reused2, failed2), = SUMMARY.findall(second.stderr)
    assert (n1, built1, reused1, failed1) == ("2", "2", "0", "0")
    assert (n2, built2, reused2, failed2) == ("2", "0", "2", "0")
    assert "reused tiny 1.0 for bookworm-armhf (cp311): tiny-1.0-cp311-cp311-linux_armv7l.whl" in second.stderr
    assert "reused tiny 1.0 for bullseye-armhf (cp39)" in second.stderr

    ledger = Ledger(root / "dist" / "ledger.sqlite")
    assert [r["command"] for r in ledger.runs()] == ["nox -s build --jobs 2"] * 2
    assert [r["jobs"] for r in ledger.runs()] == [2, 2]
    assert sorted(r["status"] for r in ledger.builds()) == ["passed", "passed", "reused", "reused"]
    assert [r["failures"] for r in ledger.runs()] == [0, 0] and all(r["finished_at"] for r in ledger.runs())

    # invoke build takes the same options (one declaration) and goes through the same run
    other = tmp_path / "other-ledger.sqlite"
    inv = subprocess.run([sys.executable, "-m", "invoke", "build", "--recipe", "tiny", "--target", "bookworm-armhf",
                          "--jobs", "1", "--no-ccache", "--ledger", str(other)], cwd=root, capture_output=True,
                         text=True, env=env)
    assert inv.returncode == 0, inv.stderr[-3000:]
    [run] = Ledger(other).runs()
    assert run["command"] == (f"invoke build --recipe=tiny --target=bookworm-armhf --jobs=1 --no-ccache "
                              f"--ledger={other}") and run["jobs"] == 1 and run["failures"] == 0
    assert [(b["package"], b["target"], b["status"]) for b in Ledger(other).builds()] == [
        ("tiny", "bookworm-armhf", "reused")]

    rep = subprocess.run([sys.executable, "-m", "invoke", "report"], cwd=root, capture_output=True, text=True,
                         env=env)
    assert rep.returncode == 0, rep.stderr
    assert "2 package x target cells (0 passed, 2 reused, 0 failed)" in rep.stdout
    data = json.loads((root / "index" / "report" / "report.json").read_text())
    assert [(c["package"], c["target"], c["status"]) for c in data["cells"]] == [
        ("tiny", "bookworm-armhf", "reused"), ("tiny", "bullseye-armhf", "reused")]
    page = (root / "index" / "report" / "index.html").read_text()
    assert page.count('class="st-reused"') == 2
    for cell in data["cells"]:
        assert (root / "index" / "report" / cell["log"]).is_file()
