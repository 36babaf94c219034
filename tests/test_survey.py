"""invoke survey: the shipped project list, failure classes, the coverage page, promote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fakeindex import FakeIndex
from packaging.version import Version

from ot2wheels.errors import ConfigError
from ot2wheels.paths import Layout
from ot2wheels.pypi import IndexClient
from ot2wheels.recipes import load_recipe
from ot2wheels.survey import (
    PYTHONS_FILE,
    Cell,
    FailureClass,
    ProjectList,
    Stage,
    SurveyProject,
    build_error_line,
    classify,
    done_cells,
    error_line,
    load_project_list,
    promote,
    recipe_pythons,
    release_for,
    run_survey,
    scratch_layout,
    sdist_releases,
    write_page,
)

REPO = Path(__file__).resolve().parents[1]


def test_shipped_list_is_100_ranked_native_projects() -> None:
    plist = load_project_list(REPO / "toolchain" / "survey-projects.toml")
    names = [p.name for p in plist.projects]
    assert len(names) == 100 and len(set(names)) == 100
    ranks = [p.rank for p in plist.projects]
    assert ranks == sorted(ranks) and len(set(ranks)) == 100
    assert plist.date and "rank" in plist.source
    assert all(p.parts for p in plist.projects)
    plain = plist.select(skip_parts=("rust", "fortran"))
    assert "cryptography" not in {p.name for p in plain} and "scipy" not in {p.name for p in plain}
    assert [p.name for p in plist.select(["MarkupSafe"])] == ["markupsafe"]


def test_project_list_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "list.toml"
    bad.write_text('[ranking]\nsource = "s"\ndate = "d"\n[[projects]]\nname = "x"\nrank = 1\nparts = ["cobol"]\n')
    with pytest.raises(ConfigError, match=r"projects\[0\] \(x\): parts"):
        load_project_list(bad)
    bad.write_text('[ranking]\nsource = "s"\n')
    with pytest.raises(ConfigError, match="ranking"):
        load_project_list(bad)


@pytest.mark.parametrize("stage, text, parts, expected", [
    (Stage.BUILD, "ERROR Missing dependencies:\n\tCython>=3.1", (), FailureClass.DYNAMIC_REQUIRES),
    (Stage.BUILD, "src/x.c:3:10: fatal error: libxml/parser.h: No such file or directory", (), FailureClass.TARGET_LIBS),
    (Stage.BUILD, "/usr/bin/arm-linux-gnueabihf-ld: /usr/lib/x86_64-linux-gnu/libfreetype.so: "
                  "error adding symbols: file in wrong format", (), FailureClass.HOST_LEAKAGE),
    (Stage.BUILD, "gate: x-1-cp36-abi3-linux_armv7l.whl: expected cp311-cp311 (or abi3)", (), FailureClass.ABI3),
    (Stage.BUILD, 'CMake Error at CMakeLists.txt:296 (find_package):\n  By not providing "FindArrow.cmake" in '
                  "CMAKE_MODULE_PATH this project has", (), FailureClass.TARGET_LIBS),  # pyarrow: no Arrow C++
    (Stage.BUILD, "error: can't find Rust compiler", (), FailureClass.RUST),
    (Stage.BUILD, "error: `cargo build` failed", (), FailureClass.RUST),
    (Stage.BUILD, "PATH: '/root/.cargo/bin:/usr/bin'\nurllib.error.URLError: <urlopen error [Errno -2] Name or "
                  "service not known>", (), FailureClass.OTHER),  # pymupdf: a download, not Rust
    (Stage.BUILD, "ERROR: Unknown compiler(s): [['gfortran']]", (), FailureClass.FORTRAN),
    (Stage.BUILD, "error: something else", ("rust",), FailureClass.RUST),
    (Stage.BUILD, "error: something else", (), FailureClass.OTHER),
    (Stage.BUILD, "ot2wheels-hostguard: host path -L/usr/lib/x86_64-linux-gnu -> -L/s/usr/lib\nerror: x", (),
     FailureClass.OTHER),  # a rewritten host path is no leak
    (Stage.BUILD, "checking whether we are cross compiling... configure: error: in `/w':\n"
                  "configure: error: cannot run C compiled programs.", (), FailureClass.HOST_LEAKAGE),
    (Stage.BUILD, "gate FAIL: x.whl\n  - x.libs/libharfbuzz.so.0: needs libglib-2.0.so.0, which the target does "
                  "not have and the wheel does not vendor", (), FailureClass.TARGET_LIBS),
    (Stage.BUILD, "#   CC=/cache/x86_64/gcc\nerror: gate FAIL: x-py3-none-any.whl", (), FailureClass.OTHER),
    (Stage.SMOKE, "ModuleNotFoundError: No module named 'optmod._accel'", (), FailureClass.SMOKE_IMPORTS),
    (Stage.SMOKE, "Segmentation fault", (), FailureClass.OTHER),
    (Stage.SMOKE, "ImportError: /t/site/nacl/_sodium.abi3.so: undefined symbol: crypto_aead_aegis128l_npubbytes",
     (), FailureClass.OTHER),  # the module is there; it does not load
    (Stage.SMOKE, "ImportError: dynamic module does not define module export function (PyInit__ARC4)", (),
     FailureClass.SMOKE_IMPORTS),  # a ctypes library in the import list
    (Stage.SMOKE, "ImportError: libgomp.so.1: cannot open shared object file: No such file or directory", (),
     FailureClass.TARGET_LIBS),
    (Stage.BUILD, 'ValueError: Cannot repair wheel, because required library "libgomp.so.1" could not be located',
     (), FailureClass.TARGET_LIBS),
    (Stage.SMOKE, "$ install pandas-3.1.1-cp311-cp311-linux_armv7l.whl\ncannot get the runtime dependencies "
                  "numpy>=2.0.2 for bookworm-armhf:\nERROR: No matching distribution found for numpy>=2.0.2", (),
     FailureClass.RUNTIME_DEPS),
    (Stage.BUILD, "timeout: build stopped after the time limit of 30 min; full log: /x.log\n"
                  "fatal error: a.h: No such file or directory", ("rust",), FailureClass.TIMEOUT),
    (Stage.PASSED, "", (), None),
])
def test_failure_classes(stage, text, parts, expected) -> None:
    assert classify(stage, text, parts) == expected


def test_error_line_prefers_the_compiler_error() -> None:
    log = "running build_ext\nwarning: x\nsrc/a.c:1:10: fatal error: foo.h: No such file or directory\n" \
          "error: command '/usr/bin/arm-linux-gnueabihf-gcc' failed with exit code 1\nERROR Backend subprocess exited"
    assert error_line(log) == "src/a.c:1:10: fatal error: foo.h: No such file or directory"
    assert error_line("") == ""
    assert error_line("-- Performing Test CXX_SUPPORTS_SSE4_2 - Failed\nCMake Error at x.cmake:5 (find_package):\n"
                      "  Could NOT find Arrow") == "CMake Error at x.cmake:5 (find_package): Could NOT find Arrow"
    assert error_line("# env\nERROR Missing dependencies:\n\tCython>=3.1\n") == "ERROR Missing dependencies: Cython>=3.1"
    smoke = ('Traceback (most recent call last):\n  File "<smoke>", line 6, in <module>\n'
             "ImportError: /t/_sodium.abi3.so: undefined symbol: crypto_x\n\nexit status 1\n")
    assert error_line(smoke) == "ImportError: /t/_sodium.abi3.so: undefined symbol: crypto_x"


def _cells() -> list[Cell]:
    return [Cell("markupsafe", "3.0.4", "bookworm-armhf", Stage.PASSED, imports=["markupsafe"]),
            Cell("markupsafe", "3.0.4", "bullseye-armhf", Stage.PASSED),
            Cell("pyyaml", "6.0.4", "bookworm-armhf", Stage.PASSED),
            Cell("pyyaml", "6.0.4", "bullseye-armhf", Stage.BUILD, FailureClass.TARGET_LIBS, "fatal error: <yaml.h>"),
            Cell("cryptography", "46.0.0", "bookworm-armhf", Stage.BUILD, FailureClass.RUST, "cargo"),
            Cell("cryptography", "46.0.0", "bullseye-armhf", Stage.UNSUPPORTED, None, "Requires-Python >=3.10")]


def test_coverage_page_counts_and_escapes(tmp_path: Path) -> None:
    plist = load_project_list(REPO / "toolchain" / "survey-projects.toml")
    chosen = plist.select(["markupsafe", "pyyaml", "cryptography"])
    out = tmp_path / "index" / "coverage"
    data = write_page(_cells(), chosen, plist, out)
    s = data["summary"]["bookworm-armhf"]
    assert (s["projects"], s["built"], s["smoke_passed"]) == (3, 2, 2)
    assert s["by_class"]["rust"] == 1 and s["no_rust_fortran"] == {"projects": 2, "passed": 2}
    assert data["summary"]["bullseye-armhf"]["by_class"]["target-libs"] == 1
    assert (data["summary"]["bullseye-armhf"]["projects"], data["summary"]["bullseye-armhf"]["unsupported"]) == (2, 1)
    page = (out / "index.html").read_text()
    assert "&lt;yaml.h&gt;" in page and "<yaml.h>" not in page
    assert json.loads((out / "coverage.json").read_text())["cells"] == data["cells"]
    # a later run of one project keeps the other projects' cells
    data = write_page([Cell("pyyaml", "6.0.4", "bullseye-armhf", Stage.PASSED)], chosen[1:2], plist, out)
    assert data["summary"]["bullseye-armhf"]["smoke_passed"] == 2 and len(data["cells"]) == 6


def _checkout(tmp_path: Path) -> Layout:
    """A scratch checkout with the repository's targets.toml and its own cache."""
    root = tmp_path / "root"
    (root / "toolchain").mkdir(parents=True)
    shutil.copy(REPO / "toolchain" / "targets.toml", root / "toolchain")
    return Layout(root=root, cache=tmp_path / "cache", dist=root / "dist")


def test_promote_only_what_passed_on_every_default_target(tmp_path: Path) -> None:
    layout = _checkout(tmp_path)
    root = layout.root
    scr = scratch_layout(layout)
    assert scr.packages == root / "build" / "survey" / "packages" and scr.packages.is_dir()
    for name in ("markupsafe", "pyyaml"):
        (scr.packages / name).mkdir()
        (scr.packages / name / "recipe.toml").write_text(f"# {name}\n")
    cov = root / "index" / "coverage"
    write_page(_cells(), [], ProjectList("s", "d", (SurveyProject("markupsafe", 40, ("c",)),)), cov)
    with pytest.raises(ConfigError, match=r"pyyaml has not passed on every default target \(bullseye-armhf: build\)"):
        promote(layout, "pyyaml", cov / "coverage.json")
    assert not (layout.packages / "pyyaml").exists()
    dest = promote(layout, "MarkupSafe", cov / "coverage.json")
    assert dest == layout.packages / "markupsafe" / "recipe.toml" and dest.read_text() == "# markupsafe\n"
    with pytest.raises(ConfigError, match="already exists"):
        promote(layout, "markupsafe", cov / "coverage.json")
    with pytest.raises(ConfigError, match="run `invoke survey --project numpy` first"):
        promote(layout, "numpy", cov / "coverage.json")


def test_survey_writes_as_it_goes_and_resumes(tmp_path: Path) -> None:
    """The page is merged and rewritten after every project, so a run killed half-way keeps what
    it did, and `--resume` (skip_cells from coverage.json) runs only what is missing."""
    idx = FakeIndex()
    idx.wheel("onlywheels", "1.0")  # no sdist: the recipe stage fails, without any build
    idx.start()
    try:
        layout = _checkout(tmp_path)
        root = layout.root
        client = IndexClient(tmp_path / "cache", index_url=idx.url)
        plist = ProjectList("s", "d", (SurveyProject("onlywheels", 1, ("c",)), SurveyProject("nowhere", 2, ("c",))))
        out = root / "index" / "coverage"
        write_page([Cell("markupsafe", "3.0.4", "bookworm-armhf", Stage.PASSED)], [], plist, out)  # an earlier run
        targets = ["bookworm-armhf"]

        def stop_after_first(cells: list[Cell]) -> None:
            write_page(cells, list(plist.projects), plist, out)
            raise KeyboardInterrupt  # the run is killed after its first project

        with pytest.raises(KeyboardInterrupt):
            run_survey(layout, list(plist.projects), targets, client=client, headers={}, say=lambda m: None,
                       progress=stop_after_first)
        cov = json.loads((out / "coverage.json").read_text())
        assert [(c["project"], c["stage"]) for c in cov["cells"]] == [("onlywheels", "recipe"), ("markupsafe", "passed")]
        assert "no final release with an sdist" in cov["cells"][0]["error"]
        done = done_cells(out / "coverage.json", targets)
        assert done == {("onlywheels", "bookworm-armhf"), ("markupsafe", "bookworm-armhf")}
        assert done_cells(out / "coverage.json", ["bullseye-armhf"]) == frozenset()

        seen: list[list[str]] = []
        cells = run_survey(layout, list(plist.projects), targets, client=client, headers={}, say=lambda m: None,
                           skip_cells=done, progress=lambda so_far: seen.append([c.project for c in so_far]))
        assert seen == [["nowhere"]] and [c.project for c in cells] == ["nowhere"]  # onlywheels not again
        assert cells[0].stage is Stage.RECIPE and cells[0].failure is FailureClass.OTHER
        data = write_page(cells, list(plist.projects), plist, out)
        assert {c["project"] for c in data["cells"]} == {"onlywheels", "nowhere", "markupsafe"}
    finally:
        idx.stop()
    (out / "coverage.json").write_text("{")
    with pytest.raises(ConfigError, match=r"not a coverage\.json"):
        done_cells(out / "coverage.json")


def test_no_release_for_the_targets_python_is_unsupported(tmp_path: Path) -> None:
    """Every sdist needs CPython >= 3.12: the cells are `unsupported` (not a recipe failure counted
    against the tool), and no recipe is written."""
    idx = FakeIndex()
    idx.sdist("toonew", "2.0", files={"setup.py": ""}, requires_python=">=3.12")
    idx.sdist("toonew", "1.0", files={"setup.py": ""}, requires_python=">=3.12")
    idx.start()
    try:
        layout = _checkout(tmp_path)
        root = layout.root
        cells = run_survey(layout, [SurveyProject("toonew", 1, ("c",))], ["bookworm-armhf", "bullseye-armhf"],
                           client=IndexClient(tmp_path / "cache", index_url=idx.url), headers={},
                           say=lambda m: None)
    finally:
        idx.stop()
    why = "(and no older release with an sdist admits it)"
    assert [(c.target, c.stage, c.version, c.error) for c in cells] == [
        ("bookworm-armhf", Stage.UNSUPPORTED, "2.0", f"Requires-Python >=3.12 excludes CPython 3.11 {why}"),
        ("bullseye-armhf", Stage.UNSUPPORTED, "2.0", f"Requires-Python >=3.12 excludes CPython 3.9 {why}")]
    assert not (root / "build" / "survey" / "packages" / "toonew").exists()


def test_each_target_takes_the_newest_release_its_python_admits(tmp_path: Path) -> None:
    """Like pip: numpy 2.5 needs 3.12, so CPython 3.11 takes 2.3 and 3.9 takes 2.0; an old sdist
    whose file name parses as another project (PyMuPDF-1.14.19.post-2.tar.gz: "version 2") is no
    release of the project, and 2.0 stays "2.0"."""
    idx = FakeIndex()
    idx.sdist("nump", "2.5.5", requires_python=">=3.12")
    idx.sdist("nump", "2.3.5", requires_python=">=3.11")
    idx.sdist("nump", "2.0.2", requires_python=">=3.9")
    idx.sdist("nump", "3.0rc1", requires_python=">=3.9")
    idx.add("nump", "nump-2.0.tar.gz", b"x")
    idx.add("nump", "Nump-1.14.19.post-2.tar.gz", b"x")
    idx.start()
    try:
        releases = sdist_releases(IndexClient(tmp_path / "cache", index_url=idx.url), "nump")
    finally:
        idx.stop()
    assert sorted(map(str, releases)) == ["2.0", "2.0.2", "2.3.5", "2.5.5"]
    assert [str(release_for(releases, py)) for py in ("3.13", "3.11", "3.9")] == ["2.5.5", "2.3.5", "2.0.2"]
    assert release_for(releases, "3.8") == Version("2.0")  # no Requires-Python: admits every Python
    assert release_for({Version("1"): ">=3.12"}, "3.11") is None


def test_build_error_line_falls_back_to_the_records_error() -> None:
    log = "# ot2wheels 0.1.0: cbor2 6.3.0\n\n# result: failed\n# error: crate bigdecimal is not available offline\n"
    assert build_error_line("crate bigdecimal is not available offline", log) == \
        "crate bigdecimal is not available offline"
    assert build_error_line("build failed (exit 1)", "x.c:1:1: error: boom\n") == "x.c:1:1: error: boom"
    assert build_error_line("timeout: build stopped after the time limit of 30 min", "x.c: error: y\n") == \
        "timeout: build stopped after the time limit of 30 min"


def test_a_scratch_recipe_is_reused_only_for_the_pythons_it_was_pinned_for(tmp_path: Path) -> None:
    """A recipe generated for CPython 3.11 pins setuptools 84 (3.10+): a bullseye (3.9) survey
    of the same release must generate it again, not reuse it."""
    recipe = tmp_path / "markupsafe" / "recipe.toml"
    recipe.parent.mkdir()
    shutil.copy(REPO / "packages" / "markupsafe" / "recipe.toml", recipe)
    version = load_recipe(recipe).version
    assert recipe_pythons(recipe, version) == set()  # no record of its Pythons: generate again
    (recipe.parent / PYTHONS_FILE).write_text('["3.11"]\n')
    assert recipe_pythons(recipe, version) == {"3.11"}
    assert recipe_pythons(recipe, "0.0.1") == set()  # another release
    (recipe.parent / PYTHONS_FILE).write_text('["3.9", "3.11"]\n')
    assert {"3.9"} <= recipe_pythons(recipe, version)
    (recipe.parent / PYTHONS_FILE).write_text("{")
    assert recipe_pythons(recipe, version) == set()
