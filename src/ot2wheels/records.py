"""The output tree: dist/<target>/<project>/<wheel>, with a JSON record and a log beside it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .errors import RecordError
from .fsutil import atomic_write
from .gate import GateReport


class Outcome(StrEnum):
    """How a build or a smoke test ended (a str: records and the ledger keep the plain word)."""

    PASSED = "passed"
    FAILED = "failed"
    REUSED = "reused"  # builds only: the cached wheel of an identical build

    @property
    def ok(self) -> bool:
        return self is not Outcome.FAILED


@dataclass(frozen=True)
class SmokeSummary:
    """A build record's note of its wheel's latest smoke test (the output is in the ledger)."""

    passed: bool
    duration_s: float


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
    gate: GateReport | None = None  # None: the build never reached the gate
    error: str | None = None
    tool_version: str = ""
    smoke: SmokeSummary | None = None  # filled by the smoke test

    def __post_init__(self) -> None:
        self.result = Outcome(self.result)  # records on disk hold the plain word

    def to_json(self) -> str:
        data = asdict(self)
        data["gate"], data["smoke"] = data["gate"] or {}, data["smoke"] or {}  # on disk: {} for none
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: dict) -> BuildRecord:
        """The record from its JSON object; TypeError/ValueError when it is not one."""
        gate, smoke = data.get("gate") or None, data.get("smoke") or None
        return cls(**{**data, "gate": GateReport.from_dict(gate) if gate else None,
                      "smoke": SmokeSummary(**smoke) if smoke else None})

    @classmethod
    def from_file(cls, path: Path) -> BuildRecord:
        """The record in `path`; RecordError naming the file if it is truncated, damaged or
        has fields this version does not know (such a build counts as not reusable)."""
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return cls.from_json(data)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            why = str(exc).split("\n")[0]
            raise RecordError(f"{path}: not a valid build record ({why}); the next build "
                              "replaces it (or delete it)") from None


def project_dir(dist: Path, target: str, project: str) -> Path:
    return dist / target / project


def stem(project: str, version: str, cp: str) -> str:
    """File stem for one build's log and record: markupsafe-3.0.4-cp311."""
    return f"{project}-{version}-{cp}"


def record_path(dist: Path, target: str, project: str, version: str, cp: str) -> Path:
    """Where one build's JSON record lives; its log is the same path with `.log`."""
    return project_dir(dist, target, project) / f"{stem(project, version, cp)}.json"


write_atomic = atomic_write  # records are plain files like the wheels beside them (0644)


def records(dist: Path, target: str | None = None) -> list[tuple[Path, BuildRecord]]:
    """Every build record under dist/ (optionally one target's), sorted by path."""
    base = dist / target if target else dist
    return [(p, BuildRecord.from_file(p)) for p in sorted(base.glob("**/*.json") if base.is_dir() else [])]


def remove_stale_wheels(pdir: Path, project: str, version: str, keep: str | None) -> list[Path]:
    """Delete wheels of `project` `version` in `pdir` other than `keep`; returns them.

    A target's project directory holds one build per version (one CPython per target), so
    these are earlier outputs of the very build whose record now names `keep` (or no wheel).
    """
    out = []
    for wheel in sorted(pdir.glob("*.whl")):
        if wheel.name == keep:
            continue
        try:
            name, ver, _build, _tags = parse_wheel_filename(wheel.name)
            same = name == canonicalize_name(project) and ver == Version(version)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if same:
            wheel.unlink(missing_ok=True)
            out.append(wheel)
    return out


def passing_wheels(dist: Path, target: str) -> list[Path]:
    """Wheels of `target` whose latest build record passed the gate."""
    out = []
    for path, rec in records(dist, target):
        if rec.result.ok and rec.wheel:
            wheel = path.parent / rec.wheel
            if wheel.is_file():
                out.append(wheel)
    return out
