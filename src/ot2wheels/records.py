"""The output tree: dist/<target>/<project>/<wheel>, with a JSON record and a log beside it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from .fsutil import atomic_write


class Outcome(StrEnum):
    """How a build or a smoke test ended (a str: records and the ledger keep the plain word)."""

    PASSED = "passed"
    FAILED = "failed"
    REUSED = "reused"  # builds only: the cached wheel of an identical build

    @property
    def ok(self) -> bool:
        return self is not Outcome.FAILED


@dataclass
class BuildRecord:
    target: str
    python: str
    project: str
    version: str
    result: Outcome
    cache_key: str
    recipe_digest: str
    toolchain_digest: str
    duration_s: float
    log: str
    wheel: str | None = None
    wheel_sha256: str | None = None
    wheel_size: int | None = None
    gate: dict = field(default_factory=dict)
    error: str | None = None
    tool_version: str = ""
    smoke: dict = field(default_factory=dict)  # filled by the smoke test: passed, duration_s

    def __post_init__(self) -> None:
        self.result = Outcome(self.result)  # records on disk hold the plain word

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> "BuildRecord":
        return cls(**json.loads(path.read_text()))


def project_dir(dist: Path, target: str, project: str) -> Path:
    return dist / target / project


def stem(project: str, version: str, cp: str) -> str:
    """File stem for one build's log and record: markupsafe-3.0.4-cp311."""
    return f"{project}-{version}-{cp}"


write_atomic = atomic_write  # records are plain files like the wheels beside them (0644)


def records(dist: Path, target: str | None = None) -> list[tuple[Path, BuildRecord]]:
    """Every build record under dist/ (optionally one target's), sorted by path."""
    base = dist / target if target else dist
    return [(p, BuildRecord.from_file(p)) for p in sorted(base.glob("**/*.json") if base.is_dir() else [])]


def passing_wheels(dist: Path, target: str) -> list[Path]:
    """Wheels of `target` whose latest build record passed the gate."""
    out = []
    for path, rec in records(dist, target):
        if rec.result.ok and rec.wheel:
            wheel = path.parent / rec.wheel
            if wheel.is_file():
                out.append(wheel)
    return out
