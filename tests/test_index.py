"""The static index: bytes, rules, crash safety, and real clients (pip, uv) over HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ot2wheels.errors import ConfigError, DiskError, IndexBuildError
from ot2wheels.index import build_index, remove_wheels, serve_index
from ot2wheels.index.serve import negotiate
from ot2wheels.index.synth import write_record, write_wheel
from ot2wheels.targets import load_targets

ROOT = Path(__file__).resolve().parents[1]
TARGET = "bookworm-armhf"  # a target of toolchain/targets.toml: CPython 3.11, linux_armv7l
ARM_TAG = "cp311-cp311-linux_armv7l"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
TARGETS = load_targets(ROOT / "toolchain" / "targets.toml")


# --- real wheels, built once per session with `build` (and retagged with `wheel tags`) ------------
def _build_wheel(src: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                   check=True, capture_output=True, text=True)
    (wheel,) = out.glob("*.whl")
    return wheel


def _project(base: Path, name: str, version: str, requires_python: str, deps: list[str]) -> Path:
    src = base / f"{name}-{version}"
    mod = src / name
    mod.mkdir(parents=True)
    (mod / "__init__.py").write_text(f"VERSION = {version!r}\n")
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "{version}"
        requires-python = "{requires_python}"
        dependencies = {json.dumps(deps)}
        [tool.setuptools]
        packages = ["{name}"]
        """))
    return src


@pytest.fixture(scope="session")
def real_wheels(tmp_path_factory) -> dict[str, Path]:
    """tinypure 1.0 and 2.0 (pure), tinyarm 1.0 retagged cp311-cp311-linux_armv7l, needing tinypure."""
    base = tmp_path_factory.mktemp("wheelsrc")
    out: dict[str, Path] = {}
    for version in ("1.0", "2.0"):
        src = _project(base, "tinypure", version, ">=3.8", [])
        out[f"tinypure-{version}"] = _build_wheel(src, base / f"out-pure-{version}")
    src = _project(base, "tinyarm", "1.0", ">=3.11", ["tinypure>=1.0"])
    pure = _build_wheel(src, base / "out-arm")
    subprocess.run([sys.executable, "-m", "wheel", "tags", "--remove", "--python-tag", "cp311",
                    "--abi-tag", "cp311", "--platform-tag", "linux_armv7l", str(pure)],
                   check=True, capture_output=True, text=True, cwd=pure.parent)
    (arm,) = pure.parent.glob(f"*{ARM_TAG}.whl")
    out["tinyarm-1.0"] = arm
    return out


def _put(dist: Path, wheel: Path, target: str = TARGET, record: bool = True) -> Path:
    """Copy a wheel into dist/<target>/<project>/ with the passing build record the index needs."""
    from packaging.utils import parse_wheel_filename

    project = parse_wheel_filename(wheel.name)[0]
    dest = dist / target / project / wheel.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wheel, dest)
    if record:
        write_record(dest, target)
    return dest


def _synth(out_dir: Path, name: str, version: str, **kw) -> Path:
    """A synthetic wheel in dist with its passing build record."""
    wheel = write_wheel(out_dir, name, version, **kw)
    write_record(wheel, out_dir.parent.name)
    return wheel


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _dirs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}


def _inodes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_ino for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def targets():
    return load_targets(ROOT / "toolchain" / "targets.toml")


@pytest.fixture
def dist(tmp_path, real_wheels) -> Path:
    d = tmp_path / "dist"
    for key in ("tinypure-1.0", "tinyarm-1.0"):
        _put(d, real_wheels[key])
    return d


def _client_env(tmp_path: Path) -> dict[str, str]:
    """pip/uv see only the index under test: no user config, find-links or extra indexes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1",
               PIP_NO_INPUT="1", UV_NO_CONFIG="1", UV_CACHE_DIR=str(tmp_path / "uv-cache"))
    return env


# --- pages -----------------------------------------------------------------------------------------
def test_pages_carry_hashes_metadata_and_escaped_requires_python(tmp_path, dist, targets):
    index = tmp_path / "index"
    result = build_index(dist, index, None, targets=targets)
    assert result.wheels == 2 and result.targets == (TARGET,)
    html = (index / TARGET / "simple" / "tinyarm" / "index.html").read_text()
    arm = next((index / TARGET / "files" / "tinyarm").glob("*.whl"))
    import hashlib

    sha = hashlib.sha256(arm.read_bytes()).hexdigest()
    meta_sha = hashlib.sha256((index / TARGET / "files" / "tinyarm" / (arm.name + ".metadata")).read_bytes()).hexdigest()
    assert f'href="../../files/tinyarm/{arm.name}#sha256={sha}"' in html
    assert 'data-requires-python="&gt;=3.11"' in html
    assert f'data-core-metadata="sha256={meta_sha}"' in html
    assert f'data-dist-info-metadata="sha256={meta_sha}"' in html
    assert b"Requires-Dist: tinypure>=1.0" in (index / TARGET / "files" / "tinyarm" / (arm.name + ".metadata")).read_bytes()
    root = (index / TARGET / "simple" / "index.html").read_text()
    assert 'href="tinyarm/"' in root and 'href="tinypure/"' in root
    landing = (index / "index.html").read_text()
    assert f"--only-binary=:all: --extra-index-url BASE_URL/{TARGET}/simple/" in landing
    assert "set global.extra-index-url" in landing
    assert "CPython 3.11, linux_armv7l, glibc 2.36" in landing
    assert "--python-version 3.11 --implementation cp --abi cp311" in landing
    assert "--platform manylinux_2_36_armv7l" in landing and "--platform linux_armv7l " in landing
    assert (index / TARGET / "constraints.txt").read_text().splitlines()[1:] == ["tinyarm==1.0", "tinypure==1.0"]


def test_landing_page_names_each_targets_architecture(tmp_path):
    """An armhf and an arm64 target on one page: each section names its own machine, and the
    intro names both (not "32-bit ARM" for everything)."""
    from ot2wheels.index import render
    from ot2wheels.index.full import _target_info
    from ot2wheels.index.model import YankList

    infos = [_target_info(name, TARGETS) for name in ("bookworm-arm64", TARGET)]
    page = render.landing_html(infos, [], YankList(()), None).decode()
    intro = page.split("<h2", 1)[0]
    assert "32-bit ARM Linux (armv7l) and 64-bit ARM Linux (aarch64)" in intro
    arm64 = page.split('<h2 id="bookworm-arm64">', 1)[1].split("<h2", 1)[0]
    armhf = page.split(f'<h2 id="{TARGET}">', 1)[1].split("<h2", 1)[0]
    assert "64-bit ARM Linux (aarch64), CPython 3.11, linux_aarch64" in arm64 and "armv7l" not in arm64
    assert "32-bit ARM Linux (armv7l), CPython 3.11, linux_armv7l" in armhf and "aarch64" not in armhf
    only_armhf = render.landing_html(infos[1:], [], YankList(()), None).decode()
    assert "aarch64" not in only_armhf


def test_absolute_base_url(tmp_path, dist):
    index = tmp_path / "index"
    build_index(dist, index, None, base_url="https://example.invalid/wheels/", targets=TARGETS)
    html = (index / TARGET / "simple" / "tinypure" / "index.html").read_text()
    assert 'href="https://example.invalid/wheels/bookworm-armhf/files/tinypure/tinypure-1.0-py3-none-any.whl#sha256=' in html
    data = json.loads((index / TARGET / "simple" / "tinypure" / "index.json").read_text())
    assert data["files"][0]["url"].startswith("https://example.invalid/wheels/bookworm-armhf/files/")
    assert "--extra-index-url https://example.invalid/wheels/bookworm-armhf/simple/" in (index / "index.html").read_text()
    with pytest.raises(IndexBuildError, match="must be absolute"):
        build_index(dist, tmp_path / "other", None, base_url="wheels/", targets=TARGETS)


def test_wheel_for_the_wrong_target_is_refused(tmp_path, real_wheels, targets):
    d = tmp_path / "dist"
    _put(d, real_wheels["tinyarm-1.0"], target="bullseye-armhf")  # CPython 3.9 cannot take cp311
    with pytest.raises(IndexBuildError, match="cannot be installed on target bullseye-armhf"):
        build_index(d, tmp_path / "index", None, targets=targets)
    assert not (tmp_path / "index").exists()


def test_wrong_target_is_refused_by_an_incremental_build_too(tmp_path, dist, real_wheels):
    """Wheels with the target's common tags are accepted without computing every tag it
    accepts; the first wheel that needs the whole set has it computed and kept in the scan
    cache, so later incremental builds check against it without recomputing, and refuse the
    same way."""
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)  # pure and cp311-cp311-linux_armv7l wheels
    assert TARGET not in json.loads((tmp_path / ".index.scan.json").read_text())["tags"]
    _synth(dist / TARGET / "older", "older", "1.0", tag="cp38-abi3-linux_armv7l")  # accepted, not common
    build_index(dist, index, None, targets=TARGETS)
    cached = json.loads((tmp_path / ".index.scan.json").read_text())["tags"]
    assert "cp38-abi3-linux_armv7l" in cached[TARGET] and "cp39-cp39-linux_armv7l" not in cached[TARGET]
    assert (index / TARGET / "files" / "older").is_dir()
    _synth(dist / TARGET / "old", "old", "1.0", tag="cp39-cp39-linux_armv7l")
    with pytest.raises(IndexBuildError, match=f"cannot be installed on target {TARGET}"):
        build_index(dist, index, None, targets=TARGETS)
    assert not (index / TARGET / "files" / "old").exists()


def test_broken_wheel_is_refused(tmp_path):
    bad = tmp_path / "dist" / TARGET / "bad" / "bad-1.0-py3-none-any.whl"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a zip")
    write_record(bad, TARGET)
    result = build_index(tmp_path / "dist", tmp_path / "index", None, targets=TARGETS)
    assert result.wheels == 0 and "not a valid wheel" in result.skipped[0]



# --- a full build split over worker processes (fanout.py) -------------------------------------------
def _varied_dist(dist: Path) -> None:
    """Projects that exercise every outcome of a scan: published, skipped without a record,
    broken, failed newest build, over several folders so that every worker gets some."""
    for i in range(12):
        _synth(dist / TARGET / f"proj{i:02d}", f"proj{i:02d}", "1.0", requires_python=">=3.9")
    _synth(dist / TARGET / "proj03", "proj03", "1.1", tag="cp311-cp311-linux_armv7l")
    write_wheel(dist / TARGET / "norecord", "norecord", "1.0")
    bad = dist / TARGET / "proj07" / "proj07-2.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    write_record(bad, TARGET)
    # Wheels in another project's folder: of a project a different worker renders (proj01), and
    # of one with no folder of its own (lonely); the same project on a second target.
    _synth(dist / TARGET / "proj10", "proj01", "1.5")
    _synth(dist / TARGET / "proj09", "lonely", "0.1")
    _synth(dist / "bookworm-arm64" / "proj01", "proj01", "1.0")


@pytest.mark.parametrize("workers", [2, 5])
def test_workers_build_the_same_index_as_one_process(tmp_path, dist, workers):
    _varied_dist(dist)
    one, many = tmp_path / "one", tmp_path / "many"
    r1 = build_index(dist, one, None, targets=TARGETS, workers=1)
    rn = build_index(dist, many, None, targets=TARGETS, workers=workers)
    assert _tree(one) == _tree(many) and _dirs(one) == _dirs(many)
    # (rewritten is in the order pages were planned: by worker, then the strays' pages)
    assert (r1.added, r1.skipped, sorted(r1.rewritten), r1.wheels) == (rn.added, rn.skipped, sorted(rn.rewritten),
                                                                        rn.wheels)
    assert r1.wheels == 18 and any("not a valid wheel" in s for s in rn.skipped)
    page = json.loads((many / TARGET / "simple" / "proj01" / "index.json").read_bytes())
    assert [f["filename"] for f in page["files"]] == ["proj01-1.0-py3-none-any.whl", "proj01-1.5-py3-none-any.whl"]
    assert (many / TARGET / "simple" / "lonely" / "index.json").is_file()
    assert "bookworm-arm64" in (many / "project" / "proj01" / "index.html").read_text()
    assert any("norecord" in s and "no build record" in s for s in rn.skipped)
    # a second full build updates the spare tree (files shared with the live tree by hard links)
    _synth(dist / TARGET / "proj11", "proj11", "2.0")
    _synth(dist / TARGET / "proj11", "proj02", "2.0")  # a stray again, now into the spare tree
    live = _inodes(many)
    build_index(dist, one, None, targets=TARGETS, workers=1, full=True)
    build_index(dist, many, None, targets=TARGETS, workers=workers, full=True)
    assert _tree(one) == _tree(many) and (tmp_path / ".many.spare").is_dir()
    assert _inodes(tmp_path / ".many.spare") == live  # the previous tree, untouched by the new one
    assert (many / TARGET / "files" / "proj11" / "proj11-2.0-py3-none-any.whl").is_file()
    page = json.loads((many / TARGET / "simple" / "proj02" / "index.json").read_bytes())
    assert [f["filename"] for f in page["files"]] == ["proj02-1.0-py3-none-any.whl", "proj02-2.0-py3-none-any.whl"]
    # the third one writes into that spare: the live tree it shares files with must not change
    _synth(dist / TARGET / "proj11", "proj11", "2.1")
    before = _tree(many)
    build_index(dist, one, None, targets=TARGETS, workers=1, full=True)
    build_index(dist, many, None, targets=TARGETS, workers=workers, full=True)
    assert _tree(one) == _tree(many) and _tree(tmp_path / ".many.spare") == before


def test_unused_yank_rules_count_every_wheel_of_every_run(tmp_path, dist):
    """A rule that matches only a wheel found in another project's folder is used; a full build of
    nothing reports every rule unused."""
    _varied_dist(dist)
    yanks = tmp_path / "yanked.toml"
    yanks.write_text('[[yank]]\nproject = "lonely"\nversion = "0.1"\n\n[[yank]]\nproject = "ghost"\nversion = "1"\n')
    for workers in (1, 3):
        result = build_index(dist, tmp_path / f"index{workers}", yanks, targets=TARGETS, workers=workers, full=True)
        assert result.unused_yanks == (f"{yanks}: yank[1]",)
        page = json.loads((tmp_path / f"index{workers}" / TARGET / "simple" / "lonely" / "index.json").read_bytes())
        assert page["files"][0]["yanked"] is True
    empty = build_index(tmp_path / "nothing", tmp_path / "empty", yanks, targets=TARGETS, full=True)
    assert empty.wheels == 0 and empty.unused_yanks == (f"{yanks}: yank[0]", f"{yanks}: yank[1]")


def test_a_workers_error_stops_the_build_and_keeps_the_index(tmp_path, dist):
    _varied_dist(dist)
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS, workers=3)
    published = _tree(index)
    # the last folder (a later worker's part) gets a wheel with a published name and other bytes
    wheel = next((dist / TARGET / "tinypure").glob("*.whl"))
    other = write_wheel(tmp_path / "other", "tinypure", "1.0")
    shutil.copyfile(other, wheel)
    write_record(wheel, TARGET)
    _synth(dist / TARGET / "proj00", "proj00", "3.0")  # a new wheel the first worker copies in
    with pytest.raises(IndexBuildError, match="immutable"):
        build_index(dist, index, None, targets=TARGETS, workers=3, full=True)
    assert _tree(index) == published
    assert not list(tmp_path.glob(".index.building-*"))


@pytest.mark.parametrize("data", [
    b'{"a":1}', b'{"a":1}\n', b'  {"a":1}', b'{"a":1} x', b'{"a":1}{"b":2}', b'\xef\xbb\xbf{"a":1}',
    '{"a":"\u00e9"}'.encode("utf-16"), b"[1,2]", b"", b"{", b'{"a":"\xff"}', b'{"a":1}\t\r\n ', b'{"a":1}\x0c',
], ids=lambda d: repr(d)[:24])
def test_build_records_are_read_as_json_loads_reads_them(data):
    """Build records are parsed without json.loads's encoding guess when they are plain UTF-8: the
    same value, or the same error, for anything else."""
    from ot2wheels.index.scan import _json_doc

    def outcome(load):
        try:
            return load(data)
        except ValueError as exc:
            return type(exc), str(exc)

    assert outcome(_json_doc) == outcome(json.loads)


@pytest.mark.parametrize("metadata", [
    b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\nRequires-Python: >=3.9\n\nName: body\n",
    b"Metadata-Version: 2.1\r\nName: Foo_Bar\r\nVersion: 2.0.post1\r\nRequires-Python: >=3.8,\r\n <4\r\n\r\n",
    b"Name: a\nName: b\nVersion: 1\n",  # a repeated single-use field is left out
    b"name: lower\nVERSION:   3 \nSummary: caf\xc3\xa9\n",
    b"Name: bad\xff\nVersion: 1\nRequires-Python:\n",  # not UTF-8: left out
    b"Name: x\n\tfolded\nVersion: 1\n",
    b"Name: a\r\nVersion: 1\r\n\r\nName: body\r\nVersion: 2\r\n",
    b"Name: a\nVersion: 1\n\r\nName: body\n\nVersion: 2\n",
    b"Name: a\nVersion: 1\n \n\tRequires-Python: >=3\n\nVersion: 2\n" + b"body \xff\n" * 1000,
], ids=["plain", "crlf-folded", "repeated", "case", "not-utf8", "folded-name", "crlf-body", "mixed-body", "long-body"])
def test_metadata_fields_are_read_as_packaging_reads_them(metadata):
    """The index reads Name/Version/Requires-Python itself (importing packaging.metadata costs more
    than an incremental publish): the same values as packaging.metadata.parse_email gives."""
    from packaging.metadata import parse_email

    from ot2wheels.index.scan import _core_fields

    raw, _ = parse_email(metadata)
    expected = {k: raw[f] for k, f in (("name", "name"), ("version", "version"),
                                       ("requires-python", "requires_python")) if f in raw}
    assert _core_fields(metadata) == expected


def test_lean_zip_reader_agrees_with_zipfile_or_steps_aside(tmp_path, real_wheels):
    """The full build reads METADATA/RECORD from each wheel's bytes with a small zip reader; on
    plain archives it gives what zipfile gives, on anything unusual it returns None (zipfile reads)."""
    import io
    import zipfile

    from ot2wheels.index.scan import _read_metadata, _zip_members

    def wanted(name: str) -> bool:
        return name.endswith((".dist-info/METADATA", ".dist-info/RECORD"))

    ends = (b".dist-info/METADATA", b".dist-info/RECORD")  # names ending otherwise are not decoded
    for wheel in real_wheels.values():
        data = wheel.read_bytes()
        with zipfile.ZipFile(wheel) as zf:
            expected = {n: zf.read(n) for n in zf.namelist() if wanted(n)}
        assert _zip_members(data, wanted, ends) == expected and len(expected) == 2
        assert _read_metadata(wheel, data) == _read_metadata(wheel)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.comment = b"a comment"
        zf.writestr("x.dist-info/METADATA", b"Name: x\n", compress_type=zipfile.ZIP_STORED)
        zf.writestr("x.dist-info/RECORD", b"", compress_type=zipfile.ZIP_DEFLATED)
    plain = buf.getvalue()
    assert _zip_members(plain, wanted, ends) == {"x.dist-info/METADATA": b"Name: x\n", "x.dist-info/RECORD": b""}
    assert _zip_members(b"#!prefix\n" + plain, wanted, ends) is None  # offsets shifted: zipfile's job
    assert _zip_members(plain.replace(b"Name: x", b"Name: y"), wanted, ends) is None  # CRC mismatch
    assert _zip_members(b"not a zip", wanted, ends) is None
    with zipfile.ZipFile(buf := io.BytesIO(), "w") as zf:
        zf.writestr("x.dist-info/METADATA", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("x.dist-info/METADATA", b"2")
    assert _zip_members(buf.getvalue(), wanted, ends) is None


@pytest.mark.parametrize("style", ["plain", "quoted-crlf", "metadata-last", "plain-crlf", "no-size-crlf"])
def test_record_line_of_metadata_is_found_however_written(tmp_path, style):
    """RECORD is searched for METADATA's line rather than parsed whole; quoting and CRLF line
    ends (csv.QUOTE_ALL writers) and any position still verify, and a wrong hash still fails."""
    import base64
    import csv
    import hashlib
    import io
    import zipfile

    from ot2wheels.index.scan import _read_metadata

    metadata = b"Metadata-Version: 2.1\nName: x\nVersion: 1.0\n"
    digest = base64.urlsafe_b64encode(hashlib.sha256(metadata).digest()).rstrip(b"=").decode()
    rows = [["x/__init__.py", "sha256=abc", "1"], ["x-1.0.dist-info/METADATA", f"sha256={digest}", "40"],
            ["x-1.0.dist-info/RECORD", "", ""]]
    if style == "metadata-last":
        rows = [rows[0], rows[2], rows[1]]
    if style == "no-size-crlf":  # the hash is then the last field, just before the line end
        rows[1] = rows[1][:2]
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL if style == "quoted-crlf" else csv.QUOTE_MINIMAL,
               lineterminator="\r\n" if style.endswith("crlf") else "\n").writerows(rows)

    def wheel(record: str) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("x-1.0.dist-info/METADATA", metadata)
            zf.writestr("x-1.0.dist-info/RECORD", record)
        return buf.getvalue()

    path = tmp_path / "x-1.0-py3-none-any.whl"
    assert _read_metadata(path, wheel(out.getvalue())) == metadata
    with pytest.raises(ValueError, match="does not match the hash in RECORD"):
        _read_metadata(path, wheel(out.getvalue().replace(digest, digest[::-1])))


@pytest.mark.parametrize(("record", "error"), [
    ("x-1.0.dist-info/METADATA\n", "RECORD has no line for METADATA"),
    (f'x-1.0.dist-info/METADATA,"sha256={"a" * 140_000}"\n', "RECORD is not valid CSV"),  # csv's field limit
    ("x-1.0.dist-info/METADATA,md5=abc,4\n", "hashes METADATA with 'md5'"),
])
def test_broken_record_line_is_a_clear_error(tmp_path, record, error):
    import io
    import zipfile

    from ot2wheels.index.scan import _read_metadata

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x-1.0.dist-info/METADATA", b"Name: x\n")
        zf.writestr("x-1.0.dist-info/RECORD", record)
    with pytest.raises(ValueError, match=error):
        _read_metadata(tmp_path / "x-1.0-py3-none-any.whl", buf.getvalue())


def test_tampered_or_mislabelled_wheels_are_refused(tmp_path, real_wheels):
    import zipfile

    src = real_wheels["tinypure-1.0"]
    bad = tmp_path / "dist" / TARGET / "tinypure" / src.name
    bad.parent.mkdir(parents=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".dist-info/METADATA"):
                data = data.replace(b"Requires-Python: >=3.8", b"Requires-Python: >=3.7")
            zout.writestr(info, data)
    write_record(bad, TARGET)

    def skipped() -> str:
        result = build_index(tmp_path / "dist", tmp_path / "index", None, targets=TARGETS)
        assert result.wheels == 0
        return "\n".join(result.skipped)

    assert "does not match the hash in RECORD" in skipped()
    bad.unlink()
    liar = write_wheel(tmp_path / "x", "tinypure", "1.0")
    shutil.copyfile(liar, bad.with_name("tinypure-1.1-py3-none-any.whl"))  # filename says 1.1
    write_record(bad.with_name("tinypure-1.1-py3-none-any.whl"), TARGET)
    assert "METADATA says tinypure 1.0 but the filename says tinypure 1.1" in skipped()


def test_build_records_decide_what_is_published(tmp_path, real_wheels):
    """Records as ot2wheels.records writes them: <project>-<version>-<cp>.json naming the wheel."""
    import hashlib

    dist = tmp_path / "dist"
    w2 = _put(dist, real_wheels["tinypure-2.0"], record=False)
    arm = _put(dist, real_wheels["tinyarm-1.0"], record=False)
    pure1 = _put(dist, real_wheels["tinypure-1.0"], record=False)

    def record(path: Path, **fields) -> None:
        data = {"result": "passed", "wheel": path.name, "wheel_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "smoke": {"passed": True, "duration_s": 1.0}}
        (path.parent / f"{path.name.split('-')[0]}-{path.name.split('-')[1]}-cp311.json").write_text(
            json.dumps({**data, **fields}))

    record(w2, smoke={"passed": False, "duration_s": 1.0})
    record(arm, result="reused")
    record(pure1, wheel_sha256="0" * 64)
    (dist / TARGET / "tinypure" / "tinypure-3.0-cp311.json").write_text(json.dumps({"result": "failed", "wheel": None}))
    result = build_index(dist, tmp_path / "index", None, targets=TARGETS)
    assert result.added == (f"{TARGET}/{arm.name}",)
    assert any(w2.name in s and "smoke test" in s for s in result.skipped)
    assert any(pure1.name in s and "changed since its build record" in s for s in result.skipped)


def test_two_builds_are_byte_identical(tmp_path, dist, real_wheels):
    _put(dist, real_wheels["tinypure-2.0"])
    a, b = tmp_path / "a", tmp_path / "b"
    build_index(dist, a, None, targets=TARGETS)
    build_index(dist, b, None, targets=TARGETS)
    assert _tree(a) == _tree(b)
    before = _inodes(a)
    again = build_index(dist, a, None, targets=TARGETS)
    assert not again.changed and again.added == ()
    assert _inodes(a) == before  # nothing rewritten, nothing swapped


def test_incremental_rewrites_only_the_changed_project(tmp_path, dist, real_wheels):
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    before = _inodes(index)
    _put(dist, real_wheels["tinypure-2.0"])
    result = build_index(dist, index, None, targets=TARGETS)
    assert result.added == (f"{TARGET}/tinypure-2.0-py3-none-any.whl",)
    after = _inodes(index)
    # The untouched project's pages and files are the very same files (hard links of the old tree).
    for rel, ino in before.items():
        if "/tinyarm/" in rel or rel.endswith("simple/index.html") or rel.endswith("simple/index.json"):
            assert after[rel] == ino, rel
    assert after[f"{TARGET}/simple/tinypure/index.html"] != before[f"{TARGET}/simple/tinypure/index.html"]
    assert set(result.rewritten) == {
        f"{TARGET}/simple/tinypure/index.html", f"{TARGET}/simple/tinypure/index.json",
        f"{TARGET}/files/tinypure/tinypure-2.0-py3-none-any.whl.metadata",
        f"{TARGET}/constraints.txt", "index.html", ".ot2wheels-index.json", "project/tinypure/index.html"}
    # And the result equals a from-scratch build of the same inputs.
    fresh = tmp_path / "fresh"
    build_index(dist, fresh, None, targets=TARGETS)
    assert _tree(fresh) == _tree(index)


# --- published wheels: immutable, never dropped -----------------------------------------------------
def test_same_filename_different_bytes_is_refused(tmp_path, dist):
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    published = _tree(index)
    wheel = next((dist / TARGET / "tinypure").glob("*.whl"))
    changed = tmp_path / "other" / wheel.name
    write_wheel(changed.parent, "tinypure", "1.0")  # a valid wheel, same filename, other bytes
    shutil.copyfile(changed, wheel)
    write_record(wheel, TARGET)  # as a passing rebuild would
    with pytest.raises(IndexBuildError) as exc:
        build_index(dist, index, None, targets=TARGETS)
    msg = str(exc.value)
    assert str(wheel) in msg and str(index / TARGET / "files" / "tinypure" / wheel.name) in msg
    assert "immutable" in msg
    assert _tree(index) == published


def test_published_wheels_are_never_dropped_unless_removed(tmp_path, dist, real_wheels):
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    shutil.rmtree(dist / TARGET / "tinyarm")  # gone from dist ...
    _put(dist, real_wheels["tinypure-2.0"])
    result = build_index(dist, index, None, targets=TARGETS)
    arm = f"{TARGET}/files/tinyarm/tinyarm-1.0-{ARM_TAG}.whl"
    assert (index / arm).is_file() and result.wheels == 3  # ... still published
    assert "tinyarm-1.0" in (index / TARGET / "simple" / "tinyarm" / "index.html").read_text()

    with pytest.raises(IndexBuildError, match="delete it from dist first"):
        remove_wheels(dist, index, None, [(TARGET, "tinypure-1.0-py3-none-any.whl")], targets=TARGETS)
    with pytest.raises(IndexBuildError, match="not published"):
        remove_wheels(dist, index, None, [(TARGET, "nope-1.0-py3-none-any.whl")], targets=TARGETS)
    result = remove_wheels(dist, index, None, [(TARGET, f"tinyarm-1.0-{ARM_TAG}.whl")], targets=TARGETS)
    assert result.removed == (f"{TARGET}/tinyarm-1.0-{ARM_TAG}.whl",)
    assert not (index / arm).exists() and not (index / TARGET / "simple" / "tinyarm").exists()
    assert "tinyarm" not in (index / TARGET / "simple" / "index.html").read_text()


# --- yanking ---------------------------------------------------------------------------------------
def test_yank_list(tmp_path, dist, real_wheels):
    _put(dist, real_wheels["tinypure-2.0"])
    yanks = tmp_path / "yanked.toml"
    yanks.write_text(textwrap.dedent("""\
        [[yank]]
        project = "TinyPure"
        version = "2.0"
        reason = "breaks <everything> & more"

        [[yank]]
        file = "tinyarm-1.0-cp311-cp311-linux_armv7l.whl"
        targets = ["bookworm-armhf"]

        [[yank]]
        project = "ghost"
        version = "1"
        """))
    index = tmp_path / "index"
    result = build_index(dist, index, yanks, targets=TARGETS)
    assert result.unused_yanks == (f"{yanks}: yank[2]",)
    html = (index / TARGET / "simple" / "tinypure" / "index.html").read_text()
    line2 = next(line for line in html.splitlines() if "tinypure-2.0" in line)
    line1 = next(line for line in html.splitlines() if "tinypure-1.0" in line)
    assert 'data-yanked="breaks &lt;everything&gt; &amp; more"' in line2 and "data-yanked" not in line1
    files = {f["filename"]: f for f in json.loads((index / TARGET / "simple" / "tinypure" / "index.json").read_text())["files"]}
    assert files["tinypure-2.0-py3-none-any.whl"]["yanked"] == "breaks <everything> & more"
    assert files["tinypure-1.0-py3-none-any.whl"]["yanked"] is False
    arm = json.loads((index / TARGET / "simple" / "tinyarm" / "index.json").read_text())["files"][0]
    assert arm["yanked"] is True
    assert 'data-yanked=""' in (index / TARGET / "simple" / "tinyarm" / "index.html").read_text()
    # The constraints file skips yanked releases.
    assert "tinypure==1.0" in (index / TARGET / "constraints.txt").read_text()

    yanks.write_text('[[yank]]\nproject = "x"\n')
    with pytest.raises(ConfigError, match="yank\\[0\\]"):
        build_index(dist, index, yanks, targets=TARGETS)


# --- crash safety of the swap -----------------------------------------------------------------------
_KILLER = """
import os, signal, sys
from pathlib import Path
from ot2wheels.index import build_index
from ot2wheels.targets import load_targets
pages = []
def progress(rel):
    pages.append(rel)
    if len(pages) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # die in the middle of writing the new tree
build_index(Path(sys.argv[1]), Path(sys.argv[2]), None, progress=progress,
            targets=load_targets(Path(sys.argv[3])), full=sys.argv[4] == "full")
"""


@pytest.mark.parametrize("mode", ["fresh tree", "spare tree"])
def test_killed_build_leaves_old_index_intact(tmp_path, dist, real_wheels, mode):
    """A full build (--full, or a change of yank list, targets, base URL) swaps whole trees."""
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    if mode == "spare tree":  # a second build leaves the previous tree as the spare to update
        _put(dist, real_wheels["tinypure-2.0"])
        build_index(dist, index, None, targets=TARGETS, full=True)
        assert (tmp_path / ".index.spare").is_dir()
    old = _tree(index)
    for i in range(5):
        _synth(dist / TARGET / f"extra{i}", f"extra{i}", "1.0")
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(dist), str(index), str(TARGETS.source), "full"],
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if mode == "fresh tree":
        assert list(tmp_path.glob(".index.building-*")), "the build should have died while writing its new tree"
    else:
        assert (tmp_path / ".index.spare" / TARGET / "simple" / "extra0").is_dir()  # died mid-update
    assert _tree(index) == old  # readers still see the complete previous index
    result = build_index(dist, index, None, targets=TARGETS)  # the next build cleans up and completes
    assert not list(tmp_path.glob(".index.building-*"))
    assert result.wheels == len(list(dist.rglob("*.whl"))) >= 7
    assert (index / TARGET / "simple" / "extra4" / "index.html").is_file()
    fresh = tmp_path / "fresh"
    build_index(dist, fresh, None, targets=TARGETS)
    assert _tree(fresh) == _tree(index) and _dirs(fresh) == _dirs(index)


def test_exception_mid_build_leaves_old_index_intact(tmp_path, dist, real_wheels):
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    old = _tree(index)
    _put(dist, real_wheels["tinypure-2.0"])

    def boom(rel: str) -> None:
        raise OSError(28, "No space left on device (injected)")

    with pytest.raises(DiskError, match=f"disk full at {index} while building the index"):
        build_index(dist, index, None, progress=boom, targets=TARGETS, full=True)
    assert _tree(index) == old
    assert not list(tmp_path.glob(".index.*-*"))


def _consistent(index: Path) -> int:
    """Every link of every page resolves to a file with the stated sha256 and a .metadata; the root
    pages link only to project pages that exist. Returns the number of file links checked."""
    import hashlib

    checked = 0
    for target in [d for d in index.iterdir() if d.is_dir() and (d / "simple").is_dir()]:
        root = (target / "simple" / "index.html").read_text()
        for name in re.findall(r'href="([^"/]+)/"', root):
            assert (target / "simple" / name / "index.json").is_file(), name
        for page in (target / "simple").glob("*/index.html"):
            for href, sha in re.findall(r'href="\.\./\.\./([^"#]+)#sha256=([0-9a-f]+)"', page.read_text()):
                wheel = target / urllib.parse.unquote(href)
                assert hashlib.sha256(wheel.read_bytes()).hexdigest() == sha, wheel
                assert wheel.with_name(wheel.name + ".metadata").is_file()
                checked += 1
    return checked


@pytest.mark.parametrize("after_pages", [1, 2, 3])
def test_killed_incremental_build_keeps_every_page_consistent(tmp_path, dist, real_wheels, after_pages):
    """An incremental build updates the live tree in place, file by file in dependency order:
    killed at any point, every page still links only to complete files with the stated hashes,
    nothing published before is gone, and the next build completes to what a fresh build gives."""
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    before = _tree(index)
    _put(dist, real_wheels["tinypure-2.0"])
    for i in range(2):
        _synth(dist / TARGET / f"extra{i}", f"extra{i}", "1.0")
    killer = _KILLER.replace("len(pages) == 2", f"len(pages) == {after_pages}")
    proc = subprocess.run([sys.executable, "-c", killer, str(dist), str(index), str(TARGETS.source), "incremental"],
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _consistent(index) >= 2
    after = _tree(index)
    assert all(rel in after for rel in before if "/files/" in rel)  # published stays published
    assert _tree(index) != before  # it did die in the middle of an in-place update
    result = build_index(dist, index, None, targets=TARGETS)
    assert _consistent(index) == 5
    fresh = tmp_path / "fresh"
    build_index(dist, fresh, None, targets=TARGETS)
    assert _tree(index) == _tree(fresh), result


@pytest.mark.parametrize("stop_after", ["index.json", "index.html"])
def test_publish_stopped_before_the_state_is_repaired(tmp_path, dist, real_wheels, monkeypatch, stop_after):
    """Pages renamed in, the state file not yet (a crash): the next build notices that the project's
    page is newer than the state and repairs the index to what a fresh build gives."""
    from ot2wheels.fsutil import atomic_write_all
    from ot2wheels.index import build as build_mod

    class Crash(BaseException):
        pass

    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    stop = index / TARGET / "simple" / "tinypure" / "index.json" if stop_after == "index.json" else index / "index.html"

    def crashing(items, renamed=None, **kw):
        def and_stop(path):
            if path == stop:
                raise Crash
        atomic_write_all(items, and_stop, **kw)

    monkeypatch.setattr(build_mod, "atomic_write_all", crashing)
    _put(dist, real_wheels["tinypure-2.0"])
    with pytest.raises(Crash):
        build_index(dist, index, None, targets=TARGETS)
    monkeypatch.undo()
    assert "2.0" in (index / TARGET / "simple" / "tinypure" / "index.json").read_text()
    assert b'"2.0"' not in (index / ".ot2wheels-index.json").read_bytes()
    result = build_index(dist, index, None, targets=TARGETS)
    assert result.wheels == 3 and not list(tmp_path.glob(".index.staging-*"))
    fresh = tmp_path / "fresh"
    build_index(dist, fresh, None, targets=TARGETS)
    assert _tree(index) == _tree(fresh)


def test_crash_between_the_two_fallback_renames_is_repaired(tmp_path, dist):
    # Where renameat2 cannot exchange, the swap is two renames; a crash between them leaves
    # the old tree under .index.old-<pid> and no index/. The next build must put it back first.
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    old = _tree(index)
    os.rename(index, tmp_path / ".index.old-12345")
    result = build_index(dist, index, None, targets=TARGETS)
    assert not result.changed and _tree(index) == old
    assert not (tmp_path / ".index.old-12345").exists()


# --- PEP 691 JSON and content negotiation ---------------------------------------------------------------
_FILE_SCHEMA = {
    "type": "object",
    "required": ["filename", "url", "hashes"],
    "properties": {
        "filename": {"type": "string"},
        "url": {"type": "string"},
        "hashes": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]+$"}},
        "requires-python": {"type": "string"},
        "core-metadata": {"oneOf": [{"type": "boolean"}, {"type": "object", "additionalProperties": {"type": "string"}}]},
        # no "dist-info-metadata": pip 23.0 (bookworm's) crashes on it in JSON (PEP 714)
        "gpg-sig": {"type": "boolean"},
        "yanked": {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
        "size": {"type": "integer", "minimum": 0},
        "upload-time": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"},  # PEP 700
    },
    "additionalProperties": False,
}
_META = {"type": "object", "required": ["api-version"],
         "properties": {"api-version": {"type": "string", "pattern": "^1\\.[0-9]+$"}}}
PROJECT_SCHEMA = {  # PEP 691 + PEP 700 (api-version 1.1: versions, size and upload-time on every file)
    "type": "object",
    "required": ["meta", "name", "files", "versions"],
    "properties": {"meta": _META, "name": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
                   "files": {"type": "array", "items": {**_FILE_SCHEMA, "required": ["filename", "url", "hashes", "size",
                                                                                "upload-time", "core-metadata"]}},
                   "versions": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}},
    "additionalProperties": False,
}
ROOT_SCHEMA = {
    "type": "object",
    "required": ["meta", "projects"],
    "properties": {"meta": _META, "projects": {"type": "array", "items": {
        "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}},
    "additionalProperties": False,
}


def test_pep691_json_pages_validate_and_agree_with_html(tmp_path, dist, real_wheels):
    jsonschema = pytest.importorskip("jsonschema")
    pypi_simple = pytest.importorskip("pypi_simple", reason="pip install pypi-simple (test extra)")
    _put(dist, real_wheels["tinypure-2.0"])
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    jsonschema.validate(json.loads((index / TARGET / "simple" / "index.json").read_text()), ROOT_SCHEMA)
    for project in ("tinypure", "tinyarm"):
        page = index / TARGET / "simple" / project
        data = json.loads((page / "index.json").read_text())
        jsonschema.validate(data, PROJECT_SCHEMA)
        base = f"http://127.0.0.1/{TARGET}/simple/{project}/"
        from_json = pypi_simple.ProjectPage.from_json_data(data, base_url=base)
        from_html = pypi_simple.ProjectPage.from_html(project, (page / "index.html").read_text(), base_url=base)
        key = lambda p: (p.filename, p.url, p.digests, p.requires_python, p.has_metadata,  # noqa: E731
                         p.metadata_digests, p.is_yanked)
        assert [key(p) for p in from_json.packages] == [key(p) for p in from_html.packages]
        for p in from_json.packages:
            assert p.has_metadata and p.metadata_digests["sha256"]


def test_negotiate():
    assert negotiate(None) == "text/html"
    assert negotiate("*/*") == "text/html"
    pip_accept = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
    assert negotiate(pip_accept) == JSON_TYPE
    assert negotiate("text/html") == "text/html"
    assert negotiate("application/vnd.pypi.simple.latest+json") == JSON_TYPE
    assert negotiate("image/png") is None
    assert negotiate("application/vnd.pypi.simple.v1+json;q=0, text/html") == "text/html"


def test_server_content_types(tmp_path, dist):
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)

    def get(url: str, accept: str | None = None):
        req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers["Content-Type"], r.read()

    with serve_index(index) as url:
        page = f"{url}/{TARGET}/simple/tinypure/"
        ctype, body = get(page, JSON_TYPE)
        assert ctype == JSON_TYPE and json.loads(body)["name"] == "tinypure"
        ctype, body = get(page, "text/html")
        assert ctype.startswith("text/html") and body.startswith(b"<!DOCTYPE html>")
        ctype, body = get(page, "application/vnd.pypi.simple.v1+html")
        assert ctype == "application/vnd.pypi.simple.v1+html"
        ctype, body = get(page + "?format=" + urllib.request.quote(JSON_TYPE, safe=""), "text/html")
        assert ctype == JSON_TYPE
        ctype, _ = get(f"{url}/{TARGET}/simple/", JSON_TYPE)
        assert ctype == JSON_TYPE
        ctype, body = get(f"{url}/{TARGET}/files/tinypure/tinypure-1.0-py3-none-any.whl")
        assert ctype == "application/octet-stream" and body[:2] == b"PK"
        ctype, _ = get(f"{url}/")
        assert ctype.startswith("text/html")
        with pytest.raises(urllib.error.HTTPError) as exc:
            get(page, "image/png")
        assert exc.value.code == 406


# --- real clients ------------------------------------------------------------------------------------
def test_host_pip_download_and_install_for_armv7l(tmp_path, dist, real_wheels):
    _put(dist, real_wheels["tinypure-2.0"])
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    seen: list[tuple[str, str]] = []
    cross = ["--platform", "linux_armv7l", "--python-version", "3.11", "--only-binary=:all:"]
    with serve_index(index, on_request=lambda path, ctype: seen.append((path, ctype))) as url:
        simple = f"{url}/{TARGET}/simple/"
        dl = tmp_path / "dl"
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--index-url", simple, "-d", str(dl),
                               *cross, "tinyarm"], env=_client_env(tmp_path), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert sorted(p.name for p in dl.iterdir()) == [
            f"tinyarm-1.0-{ARM_TAG}.whl", "tinypure-2.0-py3-none-any.whl"]
        # pip (>= 22.2) asked for PEP 691 JSON and used PEP 658 metadata instead of the wheel to resolve.
        assert (f"/{TARGET}/simple/tinyarm/", JSON_TYPE) in seen
        assert any(path.endswith(".whl.metadata") for path, _ in seen)

        site = tmp_path / "site"
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--index-url", simple, "--target", str(site),
                               *cross, "tinyarm", "tinypure<2"], env=_client_env(tmp_path),
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (site / "tinyarm" / "__init__.py").is_file()
        assert (site / "tinypure" / "__init__.py").read_text() == "VERSION = '1.0'\n"

        # The same for a Python the wheel does not support: pip must refuse (requires-python / tags).
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--index-url", simple, "-d", str(tmp_path / "no"),
                               "--platform", "linux_armv7l", "--python-version", "3.9", "--only-binary=:all:",
                               "tinyarm"], env=_client_env(tmp_path), capture_output=True, text=True)
        assert proc.returncode != 0 and "tinyarm" in proc.stderr


def test_pip_skips_yanked_release(tmp_path, dist, real_wheels):
    _put(dist, real_wheels["tinypure-2.0"])
    yanks = tmp_path / "yanked.toml"
    yanks.write_text('[[yank]]\nproject = "tinypure"\nversion = "2.0"\nreason = "bad"\n')
    index = tmp_path / "index"
    build_index(dist, index, yanks, targets=TARGETS)
    with serve_index(index) as url:
        dl = tmp_path / "dl"
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--index-url",
                               f"{url}/{TARGET}/simple/", "-d", str(dl), "tinypure"],
                              env=_client_env(tmp_path), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [p.name for p in dl.iterdir()] == ["tinypure-1.0-py3-none-any.whl"]


def _uv() -> str:
    # The test extra installs uv beside this interpreter (a venv's bin/ need not be on PATH).
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("uv is not installed (pip install uv, a test extra)")
    return uv


def test_uv_resolves_and_installs_from_the_index(tmp_path, dist, real_wheels):
    uv = _uv()
    _put(dist, real_wheels["tinypure-2.0"])
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    seen: list[tuple[str, str]] = []
    with serve_index(index, on_request=lambda path, ctype: seen.append((path, ctype))) as url:
        simple = f"{url}/{TARGET}/simple/"
        req = tmp_path / "req.in"
        req.write_text("tinypure\n")
        # uv has no armv7 platform to resolve for; it resolves the pure project against our index.
        proc = subprocess.run([uv, "pip", "compile", "--index-url", simple, "--python-version", "3.11",
                               "--no-header", "--generate-hashes", str(req)],
                              env=_client_env(tmp_path), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        import hashlib

        sha = hashlib.sha256(real_wheels["tinypure-2.0"].read_bytes()).hexdigest()
        assert "tinypure==2.0" in proc.stdout and f"--hash=sha256:{sha}" in proc.stdout
        assert (f"/{TARGET}/simple/tinypure/", JSON_TYPE) in seen  # uv read the PEP 691 JSON page
        site = tmp_path / "site"
        proc = subprocess.run([uv, "pip", "install", "--index-url", simple, "--target", str(site),
                               "--python", sys.executable, "tinypure==1.0"],
                              env=_client_env(tmp_path), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert (site / "tinypure" / "__init__.py").read_text() == "VERSION = '1.0'\n"


@pytest.mark.integration
def test_old_pip_reads_the_html_pages(tmp_path, dist, real_wheels):
    """pip 22.0 (like the robot's) reads only PEP 503 HTML: data-requires-python and data-yanked."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "pip==22.0.4"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot install pip 22.0.4 from the package index: {proc.stderr[-300:]}")
    _put(dist, real_wheels["tinypure-2.0"])
    yanks = tmp_path / "yanked.toml"
    yanks.write_text('[[yank]]\nproject = "tinypure"\nversion = "2.0"\n')
    index = tmp_path / "index"
    build_index(dist, index, yanks, targets=TARGETS)
    seen: list[tuple[str, str]] = []
    with serve_index(index, on_request=lambda path, ctype: seen.append((path, ctype))) as url:
        dl = tmp_path / "dl"
        proc = subprocess.run([str(py), "-m", "pip", "download", "--index-url", f"{url}/{TARGET}/simple/",
                               "-d", str(dl), "--platform", "linux_armv7l", "--python-version", "3.11",
                               "--only-binary=:all:", "tinyarm"], env=_client_env(tmp_path),
                              capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in dl.iterdir()) == [f"tinyarm-1.0-{ARM_TAG}.whl", "tinypure-1.0-py3-none-any.whl"]
    assert all(not ctype.startswith(JSON_TYPE) for path, ctype in seen if "/simple/" in path)


def test_exchange_swaps_two_trees_in_one_call(tmp_path):
    from ot2wheels.index import swap

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "new").write_text("new")
    (tmp_path / "b" / "old").write_text("old")
    if not swap.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this kernel or filesystem has no renameat2(RENAME_EXCHANGE); the two-rename fallback is used")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["new"]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["old"]


def test_invoke_index_tasks(tmp_path, real_wheels):
    """The thin CLI: build prints what it did; an immutability conflict exits 1 with the message."""
    (tmp_path / "toolchain").mkdir()
    shutil.copy(ROOT / "toolchain" / "targets.toml", tmp_path / "toolchain" / "targets.toml")
    wheel = _put(tmp_path / "dist", real_wheels["tinypure-1.0"])
    (tmp_path / "toolchain" / "yanked.toml").write_text('[[yank]]\nproject = "tinypure"\nversion = "1.0"\n')

    def invoke(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args, "--root", str(tmp_path)],
                              capture_output=True, text=True, cwd=tmp_path)

    proc = invoke("index.build")
    assert proc.returncode == 0, proc.stderr
    assert f"added   {TARGET}/{wheel.name}" in proc.stdout
    assert 'data-yanked=""' in (tmp_path / "index" / TARGET / "simple" / "tinypure" / "index.html").read_text()
    shutil.copyfile(write_wheel(tmp_path / "other", "tinypure", "1.0"), wheel)
    write_record(wheel, TARGET)
    proc = invoke("index.build")
    assert proc.returncode == 1 and "error:" in proc.stderr and "immutable" in proc.stderr
    wheel.unlink()
    proc = invoke("index.remove", "--wheel", f"{TARGET}/{wheel.name}")
    assert proc.returncode == 0, proc.stderr
    assert f"removed {TARGET}/{wheel.name}" in proc.stdout

    server = subprocess.Popen([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "index.serve",
                               "--port", "0", "--root", str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = server.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b"ot2wheels package index" in r.read()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_readers_see_a_complete_index_during_rebuilds(tmp_path, dist):
    """A client reading the served index while builds swap in new trees always finds every page's
    files, with the hashes the page promises (no half-written tree, no dangling link)."""
    import hashlib
    import re
    import threading

    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    errors: list[str] = []
    checked = [0]
    stop = threading.Event()

    def reader(url: str) -> None:
        while not stop.is_set():
            try:
                root = urllib.request.urlopen(f"{url}/{TARGET}/simple/", timeout=10).read().decode()
                for project in re.findall(r'href="([^"]+)/"', root):
                    page_url = f"{url}/{TARGET}/simple/{project}/"
                    page = urllib.request.urlopen(page_url, timeout=10).read().decode()
                    for href, sha in re.findall(r'href="([^"#]+)#sha256=([0-9a-f]{64})"', page):
                        body = urllib.request.urlopen(urllib.parse.urljoin(page_url, href), timeout=10).read()
                        if hashlib.sha256(body).hexdigest() != sha:
                            errors.append(f"{href}: hash differs from its page")
                        checked[0] += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    with serve_index(index) as url:
        thread = threading.Thread(target=reader, args=(url,))
        thread.start()
        try:
            for i in range(8):
                _synth(dist / TARGET / f"more{i}", f"more{i}", "1.0")
                assert build_index(dist, index, None, targets=TARGETS).changed
        finally:
            stop.set()
            thread.join()
    assert not errors, errors[:5]
    assert checked[0] > 0


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_successive_builds_equal_fresh_builds(tmp_path, dist, real_wheels, monkeypatch, exchange):
    """Adds, yanks, removals and base-URL changes through the spare tree give exactly the tree
    a fresh build of the same inputs gives (files and folders), with either swap method."""
    from ot2wheels.index import swap

    if not exchange:
        monkeypatch.setattr(swap, "_libc_renameat2", lambda: None)  # as on a system without renameat2
    index, yanks = tmp_path / "index", tmp_path / "yanked.toml"
    steps = [
        lambda: None,
        lambda: _put(dist, real_wheels["tinypure-2.0"]),
        lambda: yanks.write_text('[[yank]]\nproject = "tinypure"\nversion = "2.0"\n'),
        lambda: _synth(dist / TARGET / "newproj", "newproj", "0.1"),
        lambda: (shutil.rmtree(dist / TARGET / "newproj"),
                 remove_wheels(dist, index, yanks, [(TARGET, "newproj-0.1-py3-none-any.whl")], targets=TARGETS)),
        lambda: yanks.unlink(),
    ]
    for i, step in enumerate(steps):
        step()
        build_index(dist, index, yanks if yanks.exists() else None, targets=TARGETS)
        fresh = tmp_path / f"fresh{i}"
        build_index(dist, fresh, yanks if yanks.exists() else None, targets=TARGETS)
        assert _tree(fresh) == _tree(index), f"step {i}"
        assert _dirs(fresh) == _dirs(index), f"step {i}"
    assert not (index / TARGET / "simple" / "newproj").exists()
    assert not list(tmp_path.glob(".index.old-*")) and not list(tmp_path.glob(".index.building-*"))


def test_upload_time_is_first_publication_and_uv_exclude_newer_honours_it(tmp_path, dist, real_wheels):
    """PEP 700 upload-time: the dist wheel's mtime when first published, kept by later builds (even
    after the dist file is touched or deleted); uv --exclude-newer resolves by it."""
    uv = _uv()
    pure1 = next((dist / TARGET / "tinypure").glob("tinypure-1.0-*.whl"))
    os.utime(pure1, ns=(1_700_000_000_123_456_789,) * 2)  # 2023-11-14T22:13:20.123456Z
    index = tmp_path / "index"
    build_index(dist, index, None, targets=TARGETS)
    pure2 = _put(dist, real_wheels["tinypure-2.0"])
    os.utime(pure2, ns=(1_800_000_000_000_000_000,) * 2)  # 2027-01-15T08:00:00Z
    build_index(dist, index, None, targets=TARGETS)

    def times() -> dict[str, str]:
        page = json.loads((index / TARGET / "simple" / "tinypure" / "index.json").read_text())
        return {f["filename"]: f["upload-time"] for f in page["files"]}

    assert times() == {pure1.name: "2023-11-14T22:13:20.123456Z", pure2.name: "2027-01-15T08:00:00.000000Z"}
    os.utime(pure1)  # touched (a rebuilt, identical wheel) and then gone from dist: nothing moves
    build_index(dist, index, None, targets=TARGETS)
    pure1.unlink()
    (dist / TARGET / "tinypure" / "tinypure-1.0-py3.json").unlink()
    build_index(dist, index, None, targets=TARGETS)
    assert times()[pure1.name] == "2023-11-14T22:13:20.123456Z"
    with serve_index(index) as url:
        req = tmp_path / "req.in"
        req.write_text("tinypure\n")
        for cutoff, expected in (("2025-01-01T00:00:00Z", "tinypure==1.0"), ("2028-01-01T00:00:00Z", "tinypure==2.0")):
            proc = subprocess.run([uv, "pip", "compile", "--index-url", f"{url}/{TARGET}/simple/", "--python-version",
                                   "3.11", "--no-header", "--exclude-newer", cutoff, str(req)],
                                  env=_client_env(tmp_path), capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            assert expected in proc.stdout, (cutoff, proc.stdout)


@pytest.mark.parametrize("told", [0, 5, 99_999, 100_000, 100_001, 300_000])
def test_read_fd_reads_the_whole_file_whatever_its_size_was(tmp_path, told, monkeypatch):
    """A file read with the size its stat gave takes one read; one that grew or shrank since
    (the size told is stale) is still read whole."""
    import os

    from ot2wheels.index import scan

    data = os.urandom(100_000)
    path = tmp_path / "f"
    path.write_bytes(data)
    reads = []
    real_read = os.read
    monkeypatch.setattr(scan.os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert scan._read_fd(fd, told) == data
    finally:
        os.close(fd)
    if told == len(data):
        assert len(reads) == 1
