"""`python -m ot2wheels.index`: the no-op decided before the index code is imported, and how a new
wheel is noticed from dist folder times (and listings, for folders written just before a scan)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ot2wheels.index.synth import write_record, write_wheel

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "toolchain" / "targets.toml"
TARGET = "bookworm-armhf"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def _cli(dist: Path, index: Path, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "ot2wheels.index", str(dist), str(index), "--targets", str(TARGETS),
                           *extra], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _add(dist: Path, project: str, version: str) -> Path:
    wheel = write_wheel(dist / TARGET / project, project, version)
    write_record(wheel, TARGET)
    return wheel


def _tree(index: Path) -> dict[str, tuple[int, int]]:
    """Every file of the index (and the scan file beside it) with its inode and mtime."""
    files = [p for p in index.parent.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    return {str(p.relative_to(index.parent)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


def _age(folder: Path, seconds: int = 60) -> None:
    """Make a dist folder look written long before the next scan (not racy)."""
    t = folder.stat().st_mtime_ns - seconds * 10**9
    os.utime(folder, ns=(t, t))


def test_no_op_publishes_nothing_and_imports_no_index_code(tmp_path):
    dist, index = tmp_path / "dist", tmp_path / "out" / "index"
    _add(dist, "alpha", "1.0")
    stray = write_wheel(dist / TARGET / "stray", "stray", "1.0")  # no record: reported, not published
    first = _cli(dist, index)
    assert f"added   {TARGET}/alpha-1.0-py3-none-any.whl" in first
    code = ("import sys; from ot2wheels.index.cli import publish; "
            f"publish({str(dist)!r}, {str(index)!r}, {str(TARGETS)!r}); "
            "print(sorted(m for m in sys.modules if m in ('ot2wheels.index.build', 'packaging.tags', "
            "'pathlib', 'dataclasses')))")
    # Right after the build (its folders are "racy": compared by listing), then once they are old.
    for when in ("just built", "folders old"):
        if when == "folders old":
            for folder in (dist / TARGET).iterdir():
                _age(folder)
            assert "unchanged" in _cli(dist, index)  # the long way (times moved), nothing new
        before = _tree(index)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True)
        assert "unchanged" in proc.stdout, when
        assert f"not published: {TARGET}/stray/{stray.name}: no build record names it" in proc.stdout
        assert proc.stdout.splitlines()[-1] == "[]", when  # none of the index code, packaging or pathlib
        assert _tree(index) == before, when  # not a file written, replaced or touched


def test_wheel_added_to_a_folder_whose_time_moved_is_published(tmp_path):
    dist, index = tmp_path / "dist", tmp_path / "index"
    _add(dist, "alpha", "1.0")
    _cli(dist, index)
    _age(dist / TARGET / "alpha")
    _cli(dist, index)
    scan = json.loads((tmp_path / ".index.scan.json").read_text())["folders"][f"{TARGET}/alpha"]
    assert scan[2] is None  # an old folder is remembered by its time alone
    _add(dist, "alpha", "2.0")  # renamed in: the folder's mtime moves
    out = _cli(dist, index)
    assert f"added   {TARGET}/alpha-2.0-py3-none-any.whl" in out
    assert (index / TARGET / "files" / "alpha" / "alpha-2.0-py3-none-any.whl").is_file()


def test_wheel_added_within_the_timestamp_granularity_is_published(tmp_path):
    """A folder written just before its scan may change again without its mtime moving (coarse file
    system clocks): its listing (names, inodes) was remembered, so the new wheel is still seen."""
    dist, index = tmp_path / "dist", tmp_path / "index"
    _add(dist, "alpha", "1.0")
    _cli(dist, index)
    folder = dist / TARGET / "alpha"
    scan = json.loads((tmp_path / ".index.scan.json").read_text())["folders"][f"{TARGET}/alpha"]
    assert scan[2]  # written less than 2 s before the scan: its listing is kept
    mtime = folder.stat().st_mtime_ns
    _add(dist, "alpha", "2.0")
    os.utime(folder, ns=(mtime, mtime))  # as if the clock had not ticked since the scan
    out = _cli(dist, index)
    assert f"added   {TARGET}/alpha-2.0-py3-none-any.whl" in out


def test_what_the_folder_time_check_relies_on(tmp_path):
    """The limit, stated: an old folder whose mtime is put back after a change is not rescanned
    (ot2wheels writes dist/ by rename, which moves it); `--full` publishes what it missed."""
    dist, index = tmp_path / "dist", tmp_path / "index"
    _add(dist, "alpha", "1.0")
    _cli(dist, index)
    folder = dist / TARGET / "alpha"
    _age(folder)
    _cli(dist, index)
    mtime = folder.stat().st_mtime_ns
    _add(dist, "alpha", "2.0")
    os.utime(folder, ns=(mtime, mtime))
    assert "unchanged" in _cli(dist, index)
    assert f"added   {TARGET}/alpha-2.0-py3-none-any.whl" in _cli(dist, index, "--full")


def test_a_settled_folder_is_remembered_by_its_time_again(tmp_path):
    """A listing is kept only while a folder is young: the next publish more than 2 s later (which
    rewrites the scan file anyway) drops it, so later no-ops stat the folder and list nothing."""
    dist, index = tmp_path / "dist", tmp_path / "index"
    _add(dist, "alpha", "1.0")
    _cli(dist, index)
    scan_file = tmp_path / ".index.scan.json"
    assert json.loads(scan_file.read_text())["folders"][f"{TARGET}/alpha"][2]
    time.sleep(2.1)
    _add(dist, "beta", "1.0")
    assert f"added   {TARGET}/beta-1.0-py3-none-any.whl" in _cli(dist, index)
    folders = json.loads(scan_file.read_text())["folders"]
    assert folders[f"{TARGET}/alpha"][2] is None
    assert folders[f"{TARGET}/beta"][2]  # just written: by listing


def test_publishing_a_wheel_parses_neither_arguments_nor_targets_with_their_modules(tmp_path):
    """An incremental publish takes what it needs of the targets file from the scan file, and the
    plain command line is read without argparse: neither module is imported, nor tomllib. Nor are
    the full build's code, dataclasses (with inspect), shutil, tempfile, html, base64 or csv: each
    was a measurable part of publishing one wheel (bench/README.md)."""
    dist, index = tmp_path / "dist", tmp_path / "out" / "index"
    _add(dist, "alpha", "1.0")
    _cli(dist, index)
    _add(dist, "beta", "2.0")
    code = ("import sys; from ot2wheels.index.cli import main; "
            f"rc = main([{str(dist)!r}, {str(index)!r}, '--targets', {str(TARGETS)!r}]); "
            "print(rc, sorted(m for m in sys.modules if m in ('ot2wheels.targets', 'tomllib', 'argparse', "
            "'ot2wheels.index.full', 'ot2wheels.index.fanout', 'dataclasses', 'inspect', 'shutil', 'tempfile', "
            "'html', 'base64', 'csv')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    assert f"added   {TARGET}/beta-2.0-py3-none-any.whl" in out
    assert out.splitlines()[-1] == "0 []"
    assert (index / TARGET / "simple" / "beta" / "index.html").is_file()
    assert ">beta</a>" in (index / "index.html").read_text()


def test_a_changed_targets_file_shows_on_the_landing_page_after_a_publish(tmp_path):
    """The landing page's facts about a target come from the scan file on an incremental publish:
    a changed targets file changes the fingerprint, so the next publish takes the full path."""
    dist, index = tmp_path / "dist", tmp_path / "out" / "index"
    targets = tmp_path / "targets.toml"
    text = TARGETS.read_text()
    targets.write_text(text)

    def publish() -> str:
        proc = subprocess.run([sys.executable, "-m", "ot2wheels.index", str(dist), str(index), "--targets",
                               str(targets)], capture_output=True, text=True, env=ENV)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    _add(dist, "alpha", "1.0")
    publish()
    scan = json.loads((index.parent / ".index.scan.json").read_text())
    old = scan["targets"][TARGET]["description"]
    assert old and old in (index / "index.html").read_text()
    assert text.count(f'description = "{old}"') == 1
    targets.write_text(text.replace(f'description = "{old}"', 'description = "Renamed & described anew"'))
    _add(dist, "beta", "2.0")
    assert f"added   {TARGET}/beta-2.0-py3-none-any.whl" in publish()
    landing = (index / "index.html").read_text()
    assert "Renamed &amp; described anew" in landing and old not in landing
    scan = json.loads((index.parent / ".index.scan.json").read_text())
    assert scan["targets"][TARGET]["description"] == "Renamed & described anew"
    # Broken now: the full path parses it and says so, naming the file.
    targets.write_text(text + "\n[targets.broken\n")
    proc = subprocess.run([sys.executable, "-m", "ot2wheels.index", str(dist), str(index), "--targets",
                           str(targets)], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 1 and str(targets) in proc.stderr


def test_a_publish_parses_the_targets_file_when_the_scan_file_lacks_what_it_needs(tmp_path):
    """The scan file keeps each target's common tags; a wheel with other tags (one its target
    accepts, one it cannot install) makes the incremental publish parse the targets file for the
    target's whole tag set (kept from then on) and for the facts its error names."""
    dist, index = tmp_path / "dist", tmp_path / "out" / "index"
    _add(dist, "alpha", "1.0")
    _cli(dist, index)
    scan = json.loads((index.parent / ".index.scan.json").read_text())
    assert "py3-none-any" in scan["common"][TARGET] and TARGET not in scan["tags"]
    tag = "cp37-abi3-linux_armv7l"  # accepted by CPython 3.11, not a common tag
    assert tag not in scan["common"][TARGET]
    write_record(write_wheel(dist / TARGET / "gamma", "gamma", "1.0", tag=tag), TARGET)
    assert f"added   {TARGET}/gamma-1.0-{tag}.whl" in _cli(dist, index)
    assert tag in json.loads((index.parent / ".index.scan.json").read_text())["tags"][TARGET]
    write_record(write_wheel(dist / TARGET / "old", "old", "1.0", tag="cp39-cp39-linux_armv7l"), TARGET)
    proc = subprocess.run([sys.executable, "-m", "ot2wheels.index", str(dist), str(index), "--targets",
                           str(TARGETS)], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 1 and f"cannot be installed on target {TARGET} (CPython 3.11" in proc.stderr
    assert not (index / TARGET / "files" / "old").exists()


def test_the_plain_command_line_is_read_as_argparse_reads_it():
    from ot2wheels.index.cli import _parse_args, _plain_args

    plain = [["d", "i", "--targets", "t"], ["--targets", "t", "d", "i", "--full"],
             ["d", "--yanked", "y", "i", "--base-url", "https://x/", "--targets", "t"],
             ["d", "i", "--targets", "t", "--targets", "u"]]
    for argv in plain:
        assert _plain_args(argv) == _parse_args(argv)
    # Anything else is left to argparse: help, "--opt=value", abbreviations, mistakes.
    for argv in (["-h"], ["d", "i", "--targets=t"], ["d", "i", "--targ", "t"], ["d", "i"],
                 ["d", "i", "j", "--targets", "t"], ["d", "i", "--targets"], ["d", "i", "--targets", "-t"],
                 ["d", "i", "--targets", "t", "--"]):
        assert _plain_args(argv) is None


def test_a_publish_between_the_check_and_the_build_is_not_undone(tmp_path):
    """cli.py hands build.py what it listed and read under the lock, then lets the lock go: a
    publish that runs before the build takes it replaces the scan file: both are read again."""
    from ot2wheels.index import build_index, quick

    dist, index = tmp_path / "dist", tmp_path / "out" / "index"
    _add(dist, "alpha", "1.0")
    _cli(dist, index)
    _add(dist, "beta", "1.0")
    fp = quick.fingerprint(str(dist), None, None, str(TARGETS))
    doc, listed = quick.probe(str(dist), str(index), fp)
    assert doc is None and listed is not None and listed[2] is not None and listed[2][2] == [f"{TARGET}/beta"]
    stamp = quick.scan_stamp(str(index))
    _add(dist, "gamma", "1.0")
    assert "added   " in _cli(dist, index)  # the other publish: beta and gamma
    assert quick.scan_stamp(str(index)) != stamp
    result = build_index(dist, index, None, targets=TARGETS, listed=listed)
    assert not result.added and result.wheels == 3
    assert quick.probe(str(dist), str(index), fp)[0] is not None  # nothing new: the scan file agrees
    assert {"alpha", "beta", "gamma"} <= {p.name for p in (index / TARGET / "simple").iterdir()}
