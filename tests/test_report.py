from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ot2wheels import report
from ot2wheels.build import BuildResult
from ot2wheels.errors import LedgerError
from ot2wheels.gate import GateReport
from ot2wheels.ledger import Ledger
from ot2wheels.pipeline import Project
from ot2wheels.records import BuildRecord
from ot2wheels.smoke import SmokeResult


class Cells(HTMLParser):
    """(row header, class of each td, text of each td) of table#matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[tuple[str, str]]]] = []
        self.links: list[str] = []
        self._in: str | None = None
        self._text = ""
        self._cls = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr":
            self.rows.append(("", []))
        elif tag in ("th", "td"):
            self._in, self._text, self._cls = tag, "", a.get("class", "")
        elif tag == "a" and self._in == "td":
            self.links.append(a["href"])

    def handle_data(self, data):
        if self._in:
            self._text += data

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._in == tag and self.rows:
            head, tds = self.rows[-1]
            if tag == "th" and not tds and not head:
                self.rows[-1] = (self._text, tds)
            elif tag == "td":
                tds.append((self._cls, self._text))
            self._in = None


def _build(fresh_project: Project, dist: Path, pkg: str, target: str, status: str, seconds: float,
           size: int | None, error: str | None = None, gate: GateReport | None = None) -> BuildResult:
    recipe = fresh_project.recipe(pkg)
    tgt = fresh_project.targets.select([target])[0]
    stem = f"{pkg}-{recipe.version}-{tgt.cp}"
    log = dist / target / pkg / f"{stem}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"# build log of {stem}\n")
    wheel = None if status == "failed" else f"{pkg}-{recipe.version}-{tgt.cp}-{tgt.cp}-linux_armv7l.whl"
    rec = BuildRecord(target=target, python=tgt.python, project=pkg, version=recipe.version, result=status,
                      cache_key="k", recipe_digest=recipe.digest, toolchain_digest="t", duration_s=seconds,
                      log=log.name, wheel=wheel, wheel_sha256=None if wheel is None else "cd" * 32,
                      wheel_size=size, gate=gate if gate is not None else (None if wheel is None else GateReport(wheel, True, [], [])),
                      error=error)
    return BuildResult(recipe, tgt, rec, log.with_suffix(".json"), None)


@pytest.fixture
def filled(fresh_project: Project, tmp_path: Path) -> Ledger:
    dist = tmp_path / "dist"
    led = Ledger(dist / "ledger.sqlite")
    run = led.start_run("nox -s build", 2)
    led.record_build(_build(fresh_project, dist, "markupsafe", "bookworm-armhf", "failed", 1.0, None,
                            error="build failed (exit 1); full log: x"), 1.0, run)  # superseded below
    led.record_build(_build(fresh_project, dist, "markupsafe", "bookworm-armhf", "passed", 3.0, 20480), 3.1, run)
    led.record_build(_build(fresh_project, dist, "markupsafe", "bullseye-armhf", "reused", 4.0, 30720), 0.02, run)
    led.record_build(_build(fresh_project, dist, "msgpack", "bookworm-armhf", "failed", 2.0, None,
                            error="gate failed", gate=GateReport("msgpack.whl", False, ["needs GLIBC_2.34 > 2.31"], [])),
                     2.0, run)
    led.record_build(_build(fresh_project, dist, "msgpack", "bullseye-armhf", "passed", 12.0, 102400), 12.0, run)
    bullseye = fresh_project.targets.select(["bullseye-armhf"])[0]
    wheel = "msgpack-1.1.2-cp39-cp39-linux_armv7l.whl"
    led.record_smoke(fresh_project.recipe("msgpack"), bullseye,
                     SmokeResult(wheel, bullseye.name, False, 2.5, "Traceback...\nImportError: undefined symbol"), run)
    return led


def test_report_matches_the_ledger(filled: Ledger, tmp_path: Path, fresh_project: Project) -> None:
    out = tmp_path / "index" / "report"
    rep = report.build_report(filled, out, tmp_path, factor=None)  # tmp_path has no bench results
    assert (out / "index.html").read_text() == rep.html
    data = json.loads((out / "report.json").read_text())
    assert data["packages"] == ["markupsafe", "msgpack"]
    assert data["targets"] == ["bookworm-armhf", "bullseye-armhf"]
    by = {(c["package"], c["target"]): c for c in data["cells"]}
    latest = {(b["package"], b["target"]): b for b in filled.latest_builds()}
    assert set(by) == set(latest)
    for key, b in latest.items():
        assert by[key]["wheel_size"] == b["wheel_size"] and by[key]["build_duration_s"] == b["build_duration_s"]
    assert by[("markupsafe", "bookworm-armhf")]["status"] == "passed"  # newest row wins
    assert by[("markupsafe", "bullseye-armhf")]["status"] == "reused"
    assert by[("msgpack", "bookworm-armhf")]["reason"] == "needs GLIBC_2.34 > 2.31"
    assert by[("msgpack", "bullseye-armhf")]["status"] == "smoke-failed"
    assert "undefined symbol" in by[("msgpack", "bullseye-armhf")]["reason"]
    assert data["totals"]["ledger_builds"] == 5 and data["totals"]["ledger_reused"] == 1

    # passing cells: markupsafe on bookworm (3.0 s) and on bullseye (4.0 s); smoke-failed msgpack
    # excluded. A robot runs one target: the headline is one target's sum, not both (7.0 s).
    ts = data["time_saved"]
    assert ts["factor"] == report.DEFAULT_FACTOR and ts["cross_build_s"] == 4.0 and ts["target"] == "bullseye-armhf"
    assert ts["robot_build_s_per_install_of_all"] == 40.0
    assert {t: v["robot_build_s"] for t, v in ts["per_target"].items()} == {"bookworm-armhf": 30.0,
                                                                             "bullseye-armhf": 40.0}

    page = Cells()
    page.feed(rep.html)
    matrix = {head: tds for head, tds in page.rows if head in data["packages"]}
    assert [cls for cls, _ in matrix["markupsafe"]] == ["st-passed", "st-reused"]
    assert [cls for cls, _ in matrix["msgpack"]] == ["st-failed", "st-smoke-failed"]
    assert "20 KiB" in matrix["markupsafe"][0][1] and "build 3.0 s" in matrix["markupsafe"][0][1]
    assert "reused in 0.0 s" in matrix["markupsafe"][1][1]
    assert "needs GLIBC_2.34" in matrix["msgpack"][0][1]
    assert "100 KiB" in matrix["msgpack"][1][1] and "smoke failed (2.5 s)" in matrix["msgpack"][1][1]
    assert "<b>40.0 s</b>" in rep.html  # the time saved, as computed
    assert "assumption" in rep.html.lower() and "10x" in rep.html
    for href in page.links:  # every log link resolves to a copy next to the page
        assert (out / href).is_file() and (out / href).read_text().startswith("# build log of")
    assert len(page.links) == 4


def test_factor_comes_from_the_benchmark_when_present(filled: Ledger, tmp_path: Path) -> None:
    bench = tmp_path / "bench" / "results.json"
    bench.parent.mkdir()
    bench.write_text(json.dumps({"emulated_vs_cross": {"geomean": 6.25, "per_package": {"markupsafe": 6.25}},
                                 "machine": {"cpu": "AMD EPYC"}}))
    rep = report.build_report(filled, tmp_path / "r", tmp_path)
    assert rep.data["time_saved"]["factor"] == 6.25
    assert rep.data["time_saved"]["robot_build_s_per_install_of_all"] == 25.0
    assert "measured by bench/run.py" in rep.data["time_saved"]["factor_source"]
    again = report.build_report(filled, tmp_path / "r", tmp_path, factor=3)  # replaces the old page
    assert again.data["time_saved"]["factor"] == 3
    assert json.loads((tmp_path / "r" / "report.json").read_text())["time_saved"]["factor"] == 3


def test_no_ledger_is_an_error_naming_it(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.sqlite")
    led.path.unlink()
    with pytest.raises(LedgerError, match=r"l\.sqlite"):
        report.build_report(led, tmp_path / "r", tmp_path)


def test_escapes_what_it_shows(filled: Ledger, fresh_project: Project, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    filled.record_build(_build(fresh_project, dist, "msgpack", "bookworm-armhf", "failed", 1.0, None,
                               error="<script>alert(1)</script>"), 1.0)
    rep = report.build_report(filled, tmp_path / "r", tmp_path)
    assert "<script>alert" not in rep.html and "&lt;script&gt;" in rep.html


def test_a_benchmark_without_emulated_numbers_gives_the_default(tmp_path: Path) -> None:
    bench = tmp_path / "bench" / "results.json"
    bench.parent.mkdir()
    bench.write_text(json.dumps({"emulated_vs_cross": {"geomean": 0.0, "per_package": {}}}))
    assert report.choose_factor(tmp_path).value == report.DEFAULT_FACTOR


def test_time_saved_counts_the_from_scratch_build_not_a_ccache_rebuild(fresh_project: Project, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    led = Ledger(dist / "ledger.sqlite")
    led.record_build(_build(fresh_project, dist, "msgpack", "bookworm-armhf", "passed", 9.0, 1000), 9.0)
    led.record_build(_build(fresh_project, dist, "msgpack", "bookworm-armhf", "passed", 2.0, 1000), 2.0)  # ccache
    led.record_build(_build(fresh_project, dist, "msgpack", "bookworm-armhf", "reused", 2.0, 1000), 0.01)
    rep = report.build_report(led, tmp_path / "r", tmp_path, factor=10)
    (cell,) = rep.data["cells"]
    assert cell["status"] == "reused" and cell["build_duration_s"] == 2.0 and cell["from_scratch_s"] == 9.0
    assert rep.data["time_saved"]["robot_build_s_per_install_of_all"] == 90.0


def test_an_index_rebuild_keeps_the_report(filled: Ledger, tmp_path: Path, fresh_project: Project) -> None:
    from ot2wheels.index.build import build_index

    index_dir = tmp_path / "index"
    rep = report.build_report(filled, index_dir / "report", tmp_path, factor=None)
    build_index(fresh_project.layout.dist, index_dir, None, targets=fresh_project.targets)
    assert (index_dir / "report" / "index.html").read_text() == rep.html
    assert (index_dir / "index.html").is_file()


def test_links_the_survey_coverage_page_when_there_is_one(filled: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "index" / "report"
    assert 'id="coverage"' not in report.build_report(filled, out, tmp_path).html
    (tmp_path / "index" / "coverage").mkdir()
    (tmp_path / "index" / "coverage" / "index.html").write_text("<p>coverage</p>")
    rep = report.build_report(filled, out, tmp_path)
    assert '<a href="../coverage/index.html">' in rep.html and rep.data["coverage"] == "../coverage/index.html"


def test_a_failed_newer_build_shows_the_compiler_error_and_what_is_still_served(fresh_project: Project,
                                                                                tmp_path: Path) -> None:
    """Newest build failed after a passing, smoke-tested one: the cell says failed with the
    compiler's error line (not a log path), names the version still served, and shows no smoke
    result (the last smoke test was of the older wheel)."""
    dist = tmp_path / "dist"
    led = Ledger(dist / "ledger.sqlite")
    old = _build(fresh_project, dist, "msgpack", "bookworm-armhf", "passed", 3.0, 1000)
    led.record_build(old, 3.0)
    led.record_smoke(old.recipe, old.target, SmokeResult(old.record.wheel, "bookworm-armhf", True, 2.0, "ok"))
    new = _build(fresh_project, dist, "msgpack", "bookworm-armhf", "failed", 1.0, None,
                 error=f"build failed (exit 1); full log: {dist}/x.log")
    new.record.version = "9.9"
    log = dist / "bookworm-armhf" / "msgpack" / new.record.log
    log.write_text("# build log\ngcc -c msgpack/_cmsgpack.c\n"
                   "msgpack/_cmsgpack.c:12:5: error: implicit declaration of function 'foo'\n"
                   "error: command '/usr/bin/arm-linux-gnueabihf-gcc' failed with exit code 1\n")
    led.record_build(new, 1.0)
    rep = report.build_report(led, tmp_path / "r", tmp_path, factor=10)
    (cell,) = rep.data["cells"]
    assert cell["status"] == "failed" and cell["smoke"] is None
    assert cell["reason"] == "msgpack/_cmsgpack.c:12:5: error: implicit declaration of function 'foo'"
    assert cell["still_served"] == old.record.version
    assert "implicit declaration" in rep.html and f"still served: {old.record.version}" in rep.html
    assert "smoke passed" not in rep.html
    assert 'href="../project/msgpack/"' in rep.html  # the project's page in the index, which links back
