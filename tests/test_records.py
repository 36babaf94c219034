"""Build records on disk: permissions, unreadable records, stale wheels beside them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ot2wheels import build, records
from ot2wheels.errors import RecordError
from ot2wheels.pipeline import Project, smoke_all
from ot2wheels.records import BuildRecord


def _record(**kw) -> BuildRecord:
    base = dict(target="bookworm-armhf", python="3.11", project="tiny", version="1.0", result="passed",
                cache_key="k", recipe_digest="r", toolchain_digest="t", duration_s=1.0,
                log="tiny-1.0-cp311.log", wheel="tiny-1.0-cp311-cp311-linux_armv7l.whl")
    return BuildRecord(**{**base, **kw})


def test_build_records_are_written_0644_like_wheels_and_logs(tmp_path: Path) -> None:
    old = os.umask(0o077)  # a strict umask must not make records private
    try:
        path = tmp_path / "tiny-1.0-cp311.json"
        records.write_atomic(path, _record().to_json())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert BuildRecord.from_file(path) == _record()


@pytest.mark.parametrize("damage", ["truncated", "extended", "not-an-object"])
def test_truncated_or_extended_record_is_not_reusable_and_names_the_file(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "tiny-1.0-cp311.json"
    text = _record(cache_key="key").to_json()
    (tmp_path / "tiny-1.0-cp311-cp311-linux_armv7l.whl").write_bytes(b"wheel")
    path.write_text({"truncated": text[: len(text) // 2],
                     "extended": text.replace('"version"', '"from_the_future": 1, "version"'),
                     "not-an-object": "[1, 2]"}[damage])
    with pytest.raises(RecordError, match=f"^{path}: not a valid build record"):
        BuildRecord.from_file(path)
    assert build._reusable(path, "key") is None  # rebuilt, no traceback


def test_truncated_record_in_smoke_test_names_the_file(fresh_project: Project) -> None:
    recipe = fresh_project.recipe("markupsafe")
    target = fresh_project.targets.get("bookworm-armhf")
    path = records.record_path(fresh_project.layout.dist, target.name, recipe.name, recipe.version, target.cp)
    path.parent.mkdir(parents=True)
    path.write_text('{"target": "bookworm-armhf", "res')
    said: list[str] = []
    [(_, result)] = smoke_all(fresh_project, [(recipe, target)], say=said.append)
    assert not result.passed and any(str(path) in line for line in said)


def test_stale_wheels_of_the_same_build_are_removed(tmp_path: Path) -> None:
    names = ["tiny-1.0-cp311-cp311-linux_armv7l.whl", "tiny-1.0-cp311-cp311-manylinux_2_17_armv7l.whl",
             "tiny-2.0-cp311-cp311-linux_armv7l.whl", "other-1.0-cp311-cp311-linux_armv7l.whl"]
    for n in names:
        (tmp_path / n).write_bytes(b"w")
    gone = records.remove_stale_wheels(tmp_path, "tiny", "1.0", keep=names[1])
    assert [p.name for p in gone] == [names[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
    records.remove_stale_wheels(tmp_path, "tiny", "1.0", keep=None)  # a failed build: none stays
    assert not (tmp_path / names[1]).exists() and (tmp_path / names[2]).exists()


def test_gate_and_smoke_are_typed_and_the_json_format_is_unchanged(tmp_path: Path) -> None:
    """A record as earlier versions wrote it (gate and smoke as JSON objects, {} for none) loads
    into GateReport / SmokeSummary and is written back byte for byte."""
    import json

    from ot2wheels.gate import ElfReport, GateReport

    on_disk = json.loads(_record().to_json())
    assert on_disk["gate"] == {} and on_disk["smoke"] == {}  # none yet: empty objects, as before
    on_disk["gate"] = {"wheel": "tiny.whl", "passed": True, "reasons": ["1 ELF file(s) ok"], "repaired": False,
                       "unvendored": [], "elves": [{"path": "tiny/_tiny.so", "needed": ["libc.so.6"],
                                                    "max_glibc": "2.4", "problems": []}]}
    on_disk["smoke"] = {"passed": False, "duration_s": 1.5}
    path = tmp_path / "tiny-1.0-cp311.json"
    text = json.dumps(on_disk, indent=2, sort_keys=True) + "\n"
    path.write_text(text)
    rec = BuildRecord.from_file(path)
    assert isinstance(rec.gate, GateReport) and rec.gate.passed and rec.gate.elves == [
        ElfReport("tiny/_tiny.so", ["libc.so.6"], "2.4", [])]
    assert rec.smoke == records.SmokeSummary(passed=False, duration_s=1.5)
    assert rec.to_json() == text
    on_disk["smoke"] = {"passed": True, "duration_s": 1.0, "extra": 1}  # a field this version does not know
    path.write_text(json.dumps(on_disk))
    with pytest.raises(RecordError, match="not a valid build record"):
        BuildRecord.from_file(path)
