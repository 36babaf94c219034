"""What the index holds: one entry per published wheel, and the yank list."""

from __future__ import annotations

import time
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from packaging.version import InvalidVersion, Version

from ..errors import ConfigError
from ..wheelname import canonical_name, parse_version

_YANK_KEYS = {"project", "version", "file", "targets", "reason"}


@cache
def version_text(version: Version) -> str:
    """str(version), made once per distinct version (a full build has thousands of "1.0")."""
    return str(version)


def upload_time(mtime_ns: int) -> str:
    """A file modification time as a PEP 700 upload-time string (UTC, microseconds, Z)."""
    return f"{_utc_seconds(mtime_ns // 10**9)}.{mtime_ns // 1000 % 10**6:06d}Z"


@lru_cache(maxsize=4096)  # wheels built in the same second (a full build formats one per wheel)
def _utc_seconds(seconds: int) -> str:
    # time.gmtime, not datetime: a third of the cost
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


class WheelEntry(NamedTuple):
    """One wheel file of one target, with everything its index pages say about it.

    A NamedTuple, as ProjectRow is: a full build makes one per wheel and its worker processes
    send thousands back pickled; a tuple is ~3x cheaper to make, and to unpickle, than a frozen
    dataclass, and its class ~6x cheaper to define on every publish's imports."""

    target: str
    project: str  # canonical name (PEP 503)
    filename: str
    version: str  # as parsed from the filename, normalized by packaging
    sha256: str
    size: int
    requires_python: str | None  # Requires-Python from the wheel's METADATA, verbatim
    metadata_sha256: str  # sha256 of the .metadata file (the wheel's METADATA bytes)
    # PEP 700 upload-time (UTC, "2026-01-02T03:04:05.678901Z"): when the file entered the index.
    # Taken from the dist wheel's mtime (when the passing build wrote it) at first publication,
    # then carried over from the published page by every later build: stable and deterministic.
    upload_time: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.target, self.filename)

    @property
    def sort_key(self) -> tuple[Version, str]:
        return (parse_version(self.version), self.filename)


class ProjectRow(NamedTuple):
    """One project of one target as the pages that list every project show it (root pages,
    constraints.txt, landing page). The index's state file keeps one per (target, project), so
    publishing a wheel re-reads its own project's page, not every published entry.

    A NamedTuple, not a dataclass: thousands go through JSON on every publish, as lists, and a
    tuple is made from (and dumped as) one cheaply."""

    target: str
    project: str
    wheels: int
    versions: tuple[str, ...]  # every version served, newest first
    newest: str | None  # newest version not yanked (constraints.txt); None when all are yanked


def project_row(target: str, project: str, entries: list[WheelEntry], yanks: YankList) -> ProjectRow:
    """What the all-projects pages say about `project` on `target` (`entries`: its wheels there)."""
    versions = sorted({parse_version(e.version) for e in entries}, reverse=True)
    unyanked = [parse_version(e.version) for e in entries if yanks.status(e) is None] if yanks.rules else versions
    return ProjectRow(target, project, len(entries), tuple(map(version_text, versions)),
                      version_text(max(unyanked)) if unyanked else None)


class Failure(NamedTuple):
    """The newest build of a project on a target failed: what the pages say next to what is served."""

    version: str
    error: str  # the compiler's first `error:` line (see ot2wheels.report.error_line)
    log: str  # the build log's file name (copied to report/logs/<target>/ by `invoke report`)


class TargetInfo(NamedTuple):
    """What the landing page says about a target (from toolchain/targets.toml when known)."""

    name: str
    description: str = ""
    python: str = ""
    platform: str = ""
    glibc: str = ""
    site: str = ""
    provider: str = ""
    machine: str = ""  # uname -m of the device: armv7l, aarch64
    arch: str = ""  # the architecture for people: "32-bit ARM"
    # pip options that select exactly the wheels this target accepts (interpreter, ABIs and every
    # platform tag, as the smoke test computes them: ot2wheels.targets.pip_target_args)
    pip_target_args: tuple[str, ...] = ()


class Yank(NamedTuple):
    """A rule of the yank list: a release (project + version) or a single file, on some targets."""

    project: str | None
    version: Version | None
    file: str | None
    targets: tuple[str, ...]  # empty: every target
    reason: str
    where: str  # "<file>: yank[i]" for messages

    def matches(self, entry: WheelEntry) -> bool:
        if self.targets and entry.target not in self.targets:
            return False
        if self.file is not None:
            return entry.filename == self.file
        return entry.project == self.project and parse_version(entry.version) == self.version


class YankList(NamedTuple):
    """The yank list (toolchain/yanked.toml): its rules, in file order."""

    rules: tuple[Yank, ...] = ()

    def status(self, entry: WheelEntry) -> str | None:
        """None if not yanked, else the reason ("" when none was given)."""
        for rule in self.rules:
            if rule.matches(entry):
                return rule.reason
        return None

    def unused(self, entries: list[WheelEntry]) -> list[str]:
        return [self.rules[i].where for i in self.unused_rules(entries)]

    def unused_rules(self, entries: list[WheelEntry], among: list[int] | None = None) -> list[int]:
        """Indexes of the rules (of `among`, default all) that match none of `entries`."""
        candidates = range(len(self.rules)) if among is None else among
        return [i for i in candidates if not any(self.rules[i].matches(e) for e in entries)]


def load_yanks(path: Path | None) -> YankList:
    """Read the yank list (TOML, `[[yank]]` tables). A missing file means nothing is yanked.

    Each rule names either `file` (one wheel filename) or `project` + `version` (a release),
    optionally `targets` (list of target names; default all) and a `reason`.
    """
    if path is None or not path.exists():
        return YankList()
    import tomllib  # here: publishing without a yank list need not import it

    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"yank"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; only [[yank]] tables are allowed")
    raw = data.get("yank", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: 'yank' must be an array of tables ([[yank]])")
    return YankList(tuple(_parse_yank(item, f"{path}: yank[{i}]") for i, item in enumerate(raw)))


def _parse_yank(item: Any, where: str) -> Yank:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(item) - _YANK_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_YANK_KEYS)}")
    for key in ("project", "version", "file", "reason"):
        if key in item and not isinstance(item[key], str):
            raise ConfigError(f"{where}.{key}: expected a string, got {item[key]!r}")
    targets = item.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ConfigError(f"{where}.targets: expected a list of target names, got {targets!r}")
    file = item.get("file")
    project = item.get("project")
    version = item.get("version")
    if file is not None:
        if project is not None or version is not None:
            raise ConfigError(f"{where}: give either 'file' or 'project' + 'version', not both")
        if not file.endswith(".whl") or "/" in file:
            raise ConfigError(f"{where}.file: expected a wheel filename, got {file!r}")
        parsed_version = None
    else:
        if project is None or version is None:
            raise ConfigError(f"{where}: needs 'file', or both 'project' and 'version'")
        try:
            parsed_version = Version(version)
        except InvalidVersion:
            raise ConfigError(f"{where}.version: {version!r} is not a PEP 440 version") from None
        project = canonical_name(project)
    return Yank(project=project, version=parsed_version, file=file, targets=tuple(targets),
                reason=item.get("reason", ""), where=where)
