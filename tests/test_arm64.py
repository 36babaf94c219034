"""bookworm-arm64: recipes cross-built for aarch64, gated as AArch64 ELF, smoke-tested under qemu-aarch64."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from ot2wheels import pipeline
from ot2wheels.pipeline import Project

# ~15 s with a warm cache; ~2 min cold (arm64 package lists, two sysroots, build envs).
pytestmark = [pytest.mark.integration, pytest.mark.slow]

TARGET = "bookworm-arm64"


def _elf_headers(wheel: Path, tmp: Path) -> dict[str, tuple[int, str]]:
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if ".so" in Path(name).name:
                path = Path(zf.extract(name, tmp))
                with path.open("rb") as fh:
                    elf = ELFFile(fh)
                    out[name] = (elf.elfclass, elf["e_machine"])
    return out


def test_markupsafe_and_pyyaml_for_aarch64(fresh_project: Project, tmp_path: Path) -> None:
    pairs = fresh_project.matrix(["markupsafe", "pyyaml"], [TARGET])
    assert [(r.name, t.name) for r, t in pairs] == [("markupsafe", TARGET), ("pyyaml", TARGET)]
    lines: list[str] = []
    builds = pipeline.build_all(fresh_project, pairs, say=lines.append, jobs=1)
    assert [b.record.result for b in builds] == ["passed", "passed"], [b.record.error for b in builds]
    for b in builds:
        assert b.wheel is not None and "-cp311-cp311-" in b.wheel.name, b.wheel
        assert b.wheel.name.endswith("_aarch64.whl") and "armv7l" not in b.wheel.name
        assert any("AARCH64 ELF64" in r and "<= 2.36" in r for r in b.record.gate.reasons), b.record.gate
        elves = _elf_headers(b.wheel, tmp_path / b.recipe.name)
        assert elves and set(elves.values()) == {(64, "EM_AARCH64")}, elves
    assert builds[0].wheel.name.endswith("-linux_aarch64.whl")
    # pyyaml links the sysroot's arm64 libyaml, which the target lacks: repair vendored it
    # (auditwheel names the repaired wheel manylinux_2_17_aarch64)
    yaml_libs = [n for n in _elf_headers(builds[1].wheel, tmp_path / "again") if "libyaml" in n]
    assert yaml_libs and builds[1].record.gate.repaired, builds[1].record.gate
    smokes = pipeline.smoke_all(fresh_project, pairs, say=lines.append)
    assert [s.passed for _r, s in smokes] == [True, True], [s.output[-1500:] for _r, s in smokes]
    assert all("$ qemu-aarch64 python3.11" in s.output for _r, s in smokes)
    assert any("under qemu-aarch64" in line for line in lines)
