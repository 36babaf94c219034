"""Issue 9's index items: only passed wheels from known targets are published (the rest is
reported), names are URL-quoted and escaped in attributes, `?format=` keeps its `+`, and an
OSError while building the index is one line naming the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from packaging.version import Version

from ot2wheels.errors import DiskError
from ot2wheels.index import build_index, render, serve_index
from ot2wheels.index.synth import write_record, write_wheel
from ot2wheels.records import BuildRecord, write_atomic
from ot2wheels.targets import load_targets

ROOT = Path(__file__).resolve().parents[1]
TARGETS = load_targets(ROOT / "toolchain" / "targets.toml")
TARGET = "bookworm-armhf"
ARM = "cp311-cp311-linux_armv7l"


def _published(index: Path) -> set[str]:
    return {p.name for p in index.rglob("*.whl")}


def test_rejected_then_failed_rebuild_is_not_published(tmp_path):
    """Smoke test failed -> skipped; a later failed rebuild rewrites the record with wheel=null and
    leaves the old .whl in dist: it must still not be published (it was published before the fix)."""
    dist, index = tmp_path / "dist", tmp_path / "index"
    wheel = write_wheel(dist / TARGET / "victim", "victim", "1.0", tag=ARM)
    record = write_record(wheel, TARGET, smoke_passed=False)
    r1 = build_index(dist, index, None, targets=TARGETS)
    assert r1.wheels == 0 and "smoke test under qemu failed" in r1.skipped[0]
    rec = BuildRecord.from_file(record)
    rec.result, rec.wheel, rec.wheel_sha256, rec.smoke, rec.error = "failed", None, None, {}, "build failed"
    write_atomic(record, rec.to_json())  # the failed rebuild, as records.py writes it
    r2 = build_index(dist, index, None, targets=TARGETS)
    assert r2.wheels == 0 and _published(index) == set()
    assert r2.skipped == (f"{TARGET}/victim/{wheel.name}: no build record names it (left by an earlier build "
                          "or put there by hand); rebuild it to publish it",)


@pytest.mark.parametrize("smoke, why", [
    (None, "its smoke test has not run yet"),
    (False, "its smoke test under qemu failed"),
], ids=["smoke-not-run", "smoke-failed"])
def test_wheel_is_published_only_after_its_smoke_test_passed(tmp_path, smoke, why):
    dist, index = tmp_path / "dist", tmp_path / "index"
    wheel = write_wheel(dist / TARGET / "smoky", "smoky", "1.0", tag=ARM)
    write_record(wheel, TARGET, smoke_passed=smoke)
    result = build_index(dist, index, None, targets=TARGETS)
    assert result.wheels == 0 and why in result.skipped[0]
    write_record(wheel, TARGET, smoke_passed=True)
    assert build_index(dist, index, None, targets=TARGETS).added == (f"{TARGET}/{wheel.name}",)


def test_wheel_without_a_record_is_not_published(tmp_path):
    dist = tmp_path / "dist"
    wheel = write_wheel(dist / TARGET / "stray", "stray", "1.0")
    result = build_index(dist, tmp_path / "index", None, targets=TARGETS)
    assert result.wheels == 0 and result.skipped[0].startswith(f"{TARGET}/stray/{wheel.name}: no build record")


def test_javascript_target_directory_is_not_published(tmp_path):
    """dist/javascript:alert(3)/ is not a target: its wheel is reported, never published or linked."""
    dist, index = tmp_path / "dist", tmp_path / "index"
    evil = write_wheel(dist / "javascript:alert(3)" / "x", "x", "1.0")
    write_record(evil, "javascript:alert(3)")
    good = write_wheel(dist / TARGET / "good", "good", "1.0")
    write_record(good, TARGET)
    result = build_index(dist, index, None, targets=TARGETS)
    assert result.added == (f"{TARGET}/{good.name}",)
    assert result.skipped == (f"javascript:alert(3)/x/{evil.name}: 'javascript:alert(3)' is not a target of "
                              f"{TARGETS.source}; move the wheel under dist/<target>/ or add the target",)
    assert not (index / "javascript:alert(3)").exists()
    assert "javascript" not in (index / "index.html").read_text()


class _Attrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.values += [(k, v or "") for k, v in attrs]


@pytest.mark.parametrize("text", ["numpy", "bookworm-armhf", "a.b_c~d-1", "", "a/b", "a b", "javascript:x",
                                  "caf\u00e9", "%41", "a?b#c", "x&y"])
@pytest.mark.parametrize("safe", ["/", ""])
def test_url_quote_is_urllib_quote(text, safe):
    """The index quotes names itself for plain text (urllib.parse is imported for the rest)."""
    from urllib.parse import quote

    from ot2wheels.index.instructions import url_quote

    assert url_quote(text, safe=safe) == quote(text, safe=safe)


@pytest.mark.parametrize("text", ["numpy", "", "a&b", "<x>", 'say "hi"', "it's", "&amp;", "caf\u00e9 <&>\"'"])
def test_escape_is_html_escape(text):
    """The pages escape text themselves (the html module is not imported for it)."""
    import html

    assert render.escape(text) == html.escape(text)


_ODD = ["", "x", '"q"', "caf\u00e9", "tab\there", "nl\nline", "\\back", "\u2028", "<>&'", "\x00\x1f"]


def _project_doc(project, entries, yanks, links):
    """A PEP 691 project page (API 1.1, PEP 700, PEP 714) as data, for json.dumps."""
    files = []
    for e in sorted(entries, key=lambda e: e.sort_key):
        reason = yanks.status(e)
        item = {"filename": e.filename, "url": links.file(e), "hashes": {"sha256": e.sha256},
                "core-metadata": {"sha256": e.metadata_sha256}, "size": e.size, "upload-time": e.upload_time,
                "yanked": (reason or True) if reason is not None else False}
        if e.requires_python:
            item["requires-python"] = e.requires_python
        files.append(item)
    versions = sorted({e.version for e in entries}, key=Version)
    return {"meta": {"api-version": "1.1"}, "name": project, "versions": versions, "files": files}


def test_project_json_is_what_json_dumps_writes():
    """project_json writes its JSON itself: the bytes json.dumps gives for the same page, whatever
    the strings hold (quotes, control characters, non-ASCII), with and without yanks."""
    import random

    from ot2wheels.index.model import WheelEntry, Yank, YankList

    rng = random.Random(7)
    for _ in range(500):
        entries = []
        for i in range(rng.randint(0, 4)):
            v = rng.choice(["1.0", "2.0rc1", "1.0.post1", "10!1.0", "0.1.dev3"])
            entries.append(WheelEntry(
                "t", "proj-x", f"proj_x-{v}-{i}-py3-none-any.whl", v, "a" * 64, rng.randint(0, 10**9),
                rng.choice([None, ">=3.9", *_ODD]), "b" * 64, rng.choice(["2026-01-01T00:00:00.000000Z", *_ODD])))
        rules = [Yank(None, None, e.filename, (), rng.choice(_ODD), "w") for e in entries if rng.random() < 0.3]
        yanks = YankList(tuple(rules))
        links = render.Links(rng.choice([None, 'https://example.invalid/a b/"q"/', "file:///tmp/caf\u00e9"]))
        name = rng.choice(["proj-x", *_ODD])
        expected = json.dumps(_project_doc(name, entries, yanks, links), separators=(",", ":"), sort_keys=True,
                              ensure_ascii=False) + "\n"
        assert render.project_json(name, entries, yanks, links) == expected.encode()


@pytest.mark.parametrize("base_url", [None, "https://example.invalid/ot2", "https://example.invalid/a b/"])
def test_root_page_of_plain_names_is_the_general_form(base_url):
    """The root page of names that quoting and escaping leave alone is written with one format per
    name: the same bytes as quoting and escaping each link (a base URL with a space is not plain)."""
    names = [f"p-{i}" for i in range(5, 0, -1)] + ["a.b_c"]
    links = render.Links(base_url)
    page = render.root_html(names, "bookworm-armhf", links)
    escaped = [f'    <a href="{render.escape(links.project("bookworm-armhf", n))}">{render.escape(n)}</a><br>'
               for n in sorted(names)]
    assert page.decode().splitlines()[7:-2] == escaped


def test_names_are_url_quoted_and_escaped_in_every_attribute():
    """Whatever a name holds, every href/id the pages write is a relative path with no scheme and
    no markup: quoted (the colon becomes %3A) and escaped."""
    from ot2wheels.index.model import WheelEntry, YankList

    name = 'javascript:alert(3)"><script>'
    entry = WheelEntry(target=name, project=name, filename="x-1.0-py3-none-any.whl", version="1.0",
                       sha256="0" * 64, size=1, requires_python=None, metadata_sha256="0" * 64)
    pages = [
        render.landing_html([render.TargetInfo(name=name)], [entry], YankList(), None),
        render.root_html([name], name, render.Links()),
        render.project_html(name, [entry], YankList(), render.Links()),
    ]
    for page in pages:
        parser = _Attrs()
        parser.feed(page.decode())
        links = [v for k, v in parser.values if k in ("href", "id")]
        assert links
        for value in links:
            assert ":" not in value.split("#")[0] and "<" not in value and '"' not in value, value
        assert b"<script>" not in page
    assert 'href="javascript%3Aalert%283%29%22%3E%3Cscript%3E/simple/"' in pages[0].decode()


@pytest.mark.parametrize("mtime_ns", [0, 999, 1_000_000_000_123_456_789 // 1000 * 1000, 1_764_290_000_999_999_999,
                                      -1, -1_500_000_000_000_000_001, 253_402_300_799_000_000_000])
def test_upload_time_matches_datetime(mtime_ns):
    """PEP 700 upload-time strings from time.gmtime are the ones datetime wrote before (published
    pages keep them: a different string for the same wheel would rewrite every page)."""
    from datetime import UTC, datetime

    from ot2wheels.index.model import upload_time

    stamp = datetime.fromtimestamp(mtime_ns // 10**9, tz=UTC).replace(microsecond=mtime_ns // 1000 % 10**6)
    assert upload_time(mtime_ns) == stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_unencoded_format_query_answers_json(tmp_path):
    """`?format=application/vnd.pypi.simple.v1+json` as documented, the `+` not percent-encoded."""
    dist, index = tmp_path / "dist", tmp_path / "index"
    write_record(write_wheel(dist / TARGET / "fmt", "fmt", "1.0"), TARGET)
    build_index(dist, index, None, targets=TARGETS)
    with serve_index(index) as url:
        req = urllib.request.Request(f"{url}/{TARGET}/simple/fmt/?format=application/vnd.pypi.simple.v1+json",
                                     headers={"Accept": "text/html"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Type"] == render.JSON_CONTENT_TYPE
            assert json.loads(r.read())["name"] == "fmt"


def test_index_build_disk_full_is_one_line(tmp_path, small_disk):
    """A real ENOSPC (a 256 KiB tmpfs holds the index): one line naming the path, exit 1, old index kept."""
    disk = small_disk(256)
    dist, index = tmp_path / "dist", disk / "index"
    write_record(write_wheel(dist / TARGET / "small", "small", "1.0"), TARGET)
    build_index(dist, index, None, targets=TARGETS)
    before = {p.relative_to(index): p.read_bytes() for p in index.rglob("*") if p.is_file()}
    big = write_wheel(dist / TARGET / "big", "big", "1.0", module_code="X = " + repr(os.urandom(400_000)))  # incompressible
    write_record(big, TARGET)
    with pytest.raises(DiskError, match=f"^disk full at {disk}/index/.*; free space there"):
        build_index(dist, index, None, targets=TARGETS)
    assert {p.relative_to(index): p.read_bytes() for p in index.rglob("*") if p.is_file()} == before
    # The CLI: exit 1, the message on one line, no traceback.
    (tmp_path / "toolchain").mkdir()
    (tmp_path / "toolchain" / "targets.toml").write_bytes((ROOT / "toolchain" / "targets.toml").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "index.build", "--root",
                           str(tmp_path), "--dist", str(dist), "--index", str(index)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"not published: {TARGET}/" not in proc.stdout  # both wheels passed: nothing to report
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "disk full at" in proc.stderr


def test_failed_newer_build_shows_next_to_what_is_served(tmp_path):
    """Issue 12 item 4: 1.0 passed and is published; the newer 1.1 build failed. The landing page
    and the project's page say so with the compiler's error line and name the version pip gets;
    a later passing build clears it (incrementally, like a fresh build)."""
    dist, index = tmp_path / "dist", tmp_path / "index"
    folder = dist / TARGET / "crashy"
    good = write_wheel(folder, "crashy", "1.0", tag=ARM)
    write_record(good, TARGET)
    build_index(dist, index, None, targets=TARGETS)
    failed = BuildRecord(target=TARGET, python="3.11", project="crashy", version="1.1", result="failed",
                         cache_key="", recipe_digest="", toolchain_digest="", duration_s=1.0,
                         log="crashy-1.1-cp311.log", error=f"build failed (exit 1); full log: {folder}/x.log")
    (folder / failed.log).write_text("running build_ext\ncrashy.c: In function 'f':\n"
                                     "crashy.c:3:5: error: 'PyFoo' undeclared (first use in this function)\n"
                                     "error: command 'arm-linux-gnueabihf-gcc' failed with exit code 1\n")
    write_atomic(folder / "crashy-1.1-cp311.json", failed.to_json())
    result = build_index(dist, index, None, targets=TARGETS)
    assert result.changed and result.wheels == 1
    line = "crashy.c:3:5: error: &#x27;PyFoo&#x27; undeclared (first use in this function)"
    landing = (index / "index.html").read_text()
    assert f"newest build failed: 1.1: {line} (pip installs 1.0, the newest version published here)" in landing
    assert 'href="project/crashy/"' in landing
    page = (index / "project" / "crashy" / "index.html").read_text()
    assert line in page and "pip installs 1.0" in page and "crashy-1.0-cp311-cp311-linux_armv7l.whl" in page
    assert 'href="../../index.html"' in page and 'href="../../report/"' in page  # linked back
    assert f'href="../../report/logs/{TARGET}/crashy-1.1-cp311.log"' in page
    fresh = tmp_path / "fresh"
    build_index(dist, fresh, None, targets=TARGETS)
    assert (fresh / "index.html").read_text() == landing  # the incremental result is the full one
    newer = write_wheel(folder, "crashy", "1.2", tag=ARM)  # fixed: the newest build passes again
    write_record(newer, TARGET)
    build_index(dist, index, None, targets=TARGETS)
    landing = (index / "index.html").read_text()
    assert "newest build failed" not in landing and "1.2, 1.0" in landing
    assert "newest build failed" not in (index / "project" / "crashy" / "index.html").read_text()


def test_invoke_index_build_reports_what_it_does_not_publish(tmp_path):
    """The CLI names every wheel it leaves out, with why ("not published: <wheel>: why")."""
    (tmp_path / "toolchain").mkdir()
    (tmp_path / "toolchain" / "targets.toml").write_bytes((ROOT / "toolchain" / "targets.toml").read_bytes())
    dist = tmp_path / "dist"
    stray = write_wheel(dist / TARGET / "stray", "stray", "1.0")
    evil = write_wheel(dist / "javascript:alert(3)" / "x", "x", "1.0")
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "index.build", "--root",
                           str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"not published: {TARGET}/stray/{stray.name}: no build record names it" in proc.stdout
    assert f"not published: javascript:alert(3)/x/{evil.name}: 'javascript:alert(3)' is not a target" in proc.stdout
