from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeindex import FakeIndex

from ot2wheels.errors import ConfigError, PlanError
from ot2wheels.paths import default_cache_dir
from ot2wheels.plan import BINARY, BUILD, FALLBACK, PURE, plan, read_constraints, render, write_constraints, write_json
from ot2wheels.pypi import IndexClient
from ot2wheels.targets import Target, load_targets

ROOT = Path(__file__).resolve().parents[1]
BOOKWORM = Target(name="bookworm-armhf", python="3.11", platform="linux_armv7l", glibc=(2, 36),
                  triplet="arm-linux-gnueabihf", provider="debian")
OT2_SHAPED = Target(name="ot2", python="3.10", platform="linux_armv7l", glibc=(2, 25),
                    triplet="arm-buildroot-linux-gnueabihf", provider="buildroot-sdk")


@pytest.fixture
def index():
    idx = FakeIndex()
    idx.wheel("top", "1.0", requires=["purelib>=1", "fast", "speedy", "nativ", "armonly; platform_machine == 'x86_64'",
                                      "extraful[cli]", "old; python_version < '3.8'"])
    idx.wheel("purelib", "1.0")
    idx.wheel("purelib", "2.0")
    idx.wheel("purelib", "3.0rc1")  # pre-release: not picked
    idx.wheel("purelib", "2.5", yanked=True)
    # fast: manylinux_2_31 armv7l wheel -> binary on bookworm, nothing on the OT-2
    idx.wheel("fast", "1.0", tag="cp311-cp311-manylinux_2_31_armv7l")
    idx.wheel("fast", "1.0", tag="cp310-cp310-manylinux_2_31_armv7l")
    idx.wheel("fast", "1.0", tag="cp310-cp310-manylinux2014_x86_64")
    idx.sdist("fast", "1.0", files={"src/fast.c": "int x;"})
    # speedy: binary wheels elsewhere plus a pure wheel in the same release
    idx.wheel("speedy", "2.0", tag="cp310-cp310-manylinux2014_x86_64")
    idx.wheel("speedy", "2.0")
    # nativ: manylinux2014 armv7l (glibc 2.17): fine on both
    idx.wheel("nativ", "1.0", tag="cp310-cp310-manylinux_2_17_armv7l.manylinux2014_armv7l")
    idx.wheel("nativ", "1.0", tag="cp311-abi3-manylinux_2_17_armv7l.manylinux2014_armv7l")
    idx.wheel("extraful", "1.0", requires=["clidep; extra == 'cli'", "notwanted; extra == 'docs'"])
    idx.sdist("clidep", "0.5", files={"clidep/__init__.py": ""})
    yield idx.start()
    idx.stop()


def client(idx: FakeIndex, tmp_path: Path) -> IndexClient:
    return IndexClient(tmp_path / "cache", index_url=idx.url)


def test_buckets_follow_the_targets_tags(index: FakeIndex, tmp_path: Path) -> None:
    c = client(index, tmp_path)
    ot2 = plan("top==1.0", OT2_SHAPED, client=c)
    bw = plan("top==1.0", BOOKWORM, client=c)
    assert {e.name for e in ot2.entries} == {"top", "purelib", "fast", "speedy", "nativ", "extraful", "clidep"}
    assert ot2.get("purelib").version == "2.0"  # newest final, not yanked, not the rc
    assert ot2.get("fast").bucket == BUILD and "manylinux_2_31_armv7l" in ot2.get("fast").reason
    assert bw.get("fast").bucket == BINARY and bw.get("fast").wheel.endswith("manylinux_2_31_armv7l.whl")
    assert ot2.get("speedy").bucket == FALLBACK
    assert ot2.get("nativ").bucket == BINARY and "cp310-cp310" in ot2.get("nativ").wheel
    assert bw.get("nativ").wheel.startswith("nativ-1.0-cp311-abi3")
    assert ot2.get("top").bucket == PURE
    assert ot2.get("clidep").bucket == BUILD and "sdist only (pure Python)" in ot2.get("clidep").reason
    assert ot2.get("extraful").extras == ("cli",)
    assert [e.name for e in ot2.must_build] == ["clidep", "fast"]
    assert [e.name for e in bw.must_build] == ["clidep"]
    assert ot2.get("fast").sdist_sha256 and ot2.get("fast").sdist == "fast-1.0.tar.gz"


def test_cache_makes_the_second_plan_offline(index: FakeIndex, tmp_path: Path) -> None:
    first = plan("top==1.0", OT2_SHAPED, client=client(index, tmp_path))
    seen = len(index.requests)
    assert seen > 0
    again = IndexClient(tmp_path / "cache", index_url=index.url, offline=True)
    second = plan("top==1.0", OT2_SHAPED, client=again)
    assert len(index.requests) == seen and again.requests == 0
    assert [(e.name, e.version, e.bucket) for e in first.entries] == \
           [(e.name, e.version, e.bucket) for e in second.entries]


def test_corrupt_cache_entry_is_refetched(index: FakeIndex, tmp_path: Path) -> None:
    plan("top==1.0", OT2_SHAPED, client=client(index, tmp_path))
    pages = sorted((tmp_path / "cache" / "index" / "pages").glob("*"))
    body = next(p for p in pages if p.suffix != ".json")
    body.write_bytes(b'{"files": []}')  # sha256 no longer matches its record
    c = client(index, tmp_path)
    assert plan("top==1.0", OT2_SHAPED, client=c).get("fast").version == "1.0"
    assert c.requests == 1


def test_constraints_pin_and_conflict(index: FakeIndex, tmp_path: Path) -> None:
    cons = tmp_path / "c.txt"
    cons.write_text("# pins\npurelib==1.0\n")
    p = plan("top==1.0", OT2_SHAPED, constraints=cons, client=client(index, tmp_path))
    assert p.get("purelib").version == "1.0"
    cons.write_text("top==1.0\nfast==2.0\n")
    with pytest.raises(PlanError, match=r"fast==2\.0"):
        plan("top==1.0", OT2_SHAPED, constraints=cons, client=client(index, tmp_path))


def test_restart_when_a_later_requirement_rules_out_a_pick(index: FakeIndex, tmp_path: Path) -> None:
    index.wheel("a", "1.0", requires=["purelib", "b"])
    index.wheel("b", "1.0", requires=["purelib<2"])
    p = plan("a", OT2_SHAPED, client=client(index, tmp_path))
    assert p.get("purelib").version == "1.0"


def test_backtracks_to_an_older_release_when_the_newest_conflicts(index: FakeIndex, tmp_path: Path) -> None:
    """a 3.0 and 2.0 need c<1 while b needs c>=1: only a 1.0 (no c requirement) fits."""
    index.wheel("app", "1.0", requires=["a", "b"])
    index.wheel("a", "1.0", requires=["purelib"])
    index.wheel("a", "2.0", requires=["c<1"])
    index.wheel("a", "3.0", requires=["c<0.5"])
    index.wheel("b", "1.0", requires=["c>=1"])
    for v in ("0.4", "0.9", "1.0", "1.1"):
        index.wheel("c", v)
    p = plan("app", OT2_SHAPED, client=client(index, tmp_path))
    assert {e.name: e.version for e in p.entries} == {"app": "1.0", "a": "1.0", "b": "1.0", "c": "1.1",
                                                      "purelib": "2.0"}
    assert p.get("c").required_by == ("b==1.0",)  # a 2.0's edge went with the pick it belonged to
    assert p.get("purelib").required_by == ("a==1.0",)


def test_backtracking_respects_target_facts(index: FakeIndex, tmp_path: Path) -> None:
    """The release it backtracks to must still fit the target: tags up to its glibc, its Python."""
    index.wheel("app", "1.0", requires=["x", "y"])
    index.wheel("x", "3.0", requires=["z<1"])
    index.wheel("x", "2.0", tag="cp310-cp310-manylinux_2_31_armv7l")  # too new a glibc for the OT-2 ...
    index.wheel("x", "1.5", requires_python=">=3.11")                  # ... too new a Python ...
    index.wheel("x", "1.0")                                            # ... this one fits
    index.wheel("y", "1.0", requires=["z>=1"])
    index.wheel("z", "0.5")
    index.wheel("z", "1.0")
    assert plan("app", OT2_SHAPED, client=client(index, tmp_path)).get("x").version == "1.0"
    assert plan("app", BOOKWORM, client=client(index, tmp_path)).get("x").version == "1.5"


def test_unresolvable_conflict_names_both_sides(index: FakeIndex, tmp_path: Path) -> None:
    index.wheel("app", "1.0", requires=["a", "b"])
    index.wheel("a", "1.0", requires=["c<1"])
    index.wheel("b", "1.0", requires=["c>=1"])
    index.wheel("c", "0.5")
    index.wheel("c", "1.0")
    with pytest.raises(PlanError, match=r"no release of c matches .*a==1\.0 requires c<1; b==1\.0 requires c>=1"):
        plan("app", OT2_SHAPED, client=client(index, tmp_path))


def test_cutoff_uses_upload_times(index: FakeIndex, tmp_path: Path) -> None:
    index.wheel("dated", "1.0", upload_time="2024-01-01T00:00:00Z")
    index.wheel("dated", "2.0", upload_time="2025-06-01T00:00:00Z")
    assert plan("dated", OT2_SHAPED, cutoff="2025-01-01", client=client(index, tmp_path)).get("dated").version == "1.0"
    assert plan("dated", OT2_SHAPED, client=client(index, tmp_path)).get("dated").version == "2.0"
    with pytest.raises(PlanError, match="uploaded before 2023-01-01"):
        plan("dated", OT2_SHAPED, cutoff="2023-01-01", client=client(index, tmp_path))


def test_requires_python_is_the_targets(index: FakeIndex, tmp_path: Path) -> None:
    index.wheel("modern", "1.0")
    index.wheel("modern", "2.0", requires_python=">=3.11")
    assert plan("modern", OT2_SHAPED, client=client(index, tmp_path)).get("modern").version == "1.0"
    assert plan("modern", BOOKWORM, client=client(index, tmp_path)).get("modern").version == "2.0"


def test_outputs(index: FakeIndex, tmp_path: Path) -> None:
    p = plan("top==1.0", OT2_SHAPED, client=client(index, tmp_path))
    write_json(p, tmp_path / "out" / "plan.json")
    write_constraints(p, tmp_path / "out" / "constraints.txt")
    data = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert data["counts"]["must-build"] == 2 and data["target"] == "ot2"
    pins = read_constraints(tmp_path / "out" / "constraints.txt")
    assert str(pins["fast"]) == "1.0" and len(pins) == 7
    from rich.console import Console
    console = Console(record=True, width=200)
    render(p, console)
    assert "must build: clidep==0.5, fast==1.0" in console.export_text()


def test_must_builds_are_marked_with_their_recipes(index: FakeIndex, tmp_path: Path) -> None:
    p = plan("top==1.0", OT2_SHAPED, client=client(index, tmp_path)).with_recipes({"fast": "1.0", "clidep": "0.4"})
    assert p.get("fast").recipe_status == "recipe"
    assert p.get("clidep").recipe_status == "recipe 0.4 (planned 0.5)"
    assert p.get("top").recipe is None and p.get("top").recipe_status == ""
    write_json(p, tmp_path / "plan.json")
    entries = {e["name"]: e for e in json.loads((tmp_path / "plan.json").read_text())["entries"]}
    assert entries["fast"]["recipe"] == "1.0" and entries["fast"]["recipe_matches"] is True
    assert entries["clidep"]["recipe_matches"] is False and "recipe_matches" not in entries["top"]
    from rich.console import Console
    console = Console(record=True, width=200)
    render(p.with_recipes({}), console)
    text = console.export_text()
    assert "no recipe" in text and "recipes: 0 of 2 must-builds have one at the planned version" in text


def test_bad_constraints_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.txt"
    bad.write_text("foo>=1\n")
    with pytest.raises(ConfigError, match=r"c\.txt:1"):
        read_constraints(bad)


def test_ot2_target_facts() -> None:
    t = load_targets(ROOT / "toolchain" / "targets.toml").get("ot2")
    assert (t.python, t.glibc, t.platform, t.provider) == ("3.10", (2, 25), "linux_armv7l", "buildroot-sdk")
    assert "manylinux_2_26_armv7l" not in t.platform_tags() and "manylinux_2_25_armv7l" in t.platform_tags()


@pytest.mark.integration
def test_prefect_must_build_lists_differ_by_target() -> None:
    """The real index: prefect 3.3.4's pinned closure on bookworm vs the OT-2 (cached after the first run)."""
    cons = ROOT / "packages" / "prefect" / "constraints.txt"
    c = IndexClient(default_cache_dir())
    ot2 = plan("prefect==3.3.4", OT2_SHAPED, constraints=cons, client=c)
    bw = plan("prefect==3.3.4", load_targets(ROOT / "toolchain" / "targets.toml").get("bookworm-armhf"),
              constraints=cons, client=c)
    ot2_build = {e.name for e in ot2.must_build}
    bw_build = {e.name for e in bw.must_build}
    assert ot2_build == {"cffi", "cryptography", "greenlet", "regex", "ujson", "asyncpg", "pyyaml"}
    assert "cryptography" not in bw_build and bw_build < ot2_build
    assert len(ot2.entries) == 93
    assert ot2.get("orjson").bucket == BINARY and ot2.get("sqlalchemy").bucket == FALLBACK


def test_flex_plans_aarch64_wheels_up_to_its_assumed_glibc(tmp_path: Path) -> None:
    flex = load_targets(ROOT / "toolchain" / "targets.toml").get("flex")
    idx = FakeIndex()
    idx.wheel("top", "1.0", requires=["ok", "toonew", "armonly"])
    idx.wheel("ok", "1.0", tag="cp310-cp310-manylinux_2_31_aarch64")
    idx.wheel("toonew", "1.0", tag="cp310-cp310-manylinux_2_34_aarch64")
    idx.sdist("toonew", "1.0", files={"src/t.c": "int x;"})
    idx.wheel("armonly", "1.0", tag="cp310-cp310-manylinux2014_armv7l")
    idx.sdist("armonly", "1.0", files={"src/a.c": "int x;"})
    idx.start()
    try:
        p = plan("top==1.0", flex, client=client(idx, tmp_path))
    finally:
        idx.stop()
    assert p.get("ok").bucket == BINARY and p.get("ok").wheel.endswith("manylinux_2_31_aarch64.whl")
    assert p.get("toonew").bucket == BUILD and "manylinux_2_34_aarch64" in p.get("toonew").reason
    assert p.get("armonly").bucket == BUILD
    assert [e.name for e in p.must_build] == ["armonly", "toonew"]
