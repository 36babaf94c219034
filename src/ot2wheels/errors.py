"""One error type per failure kind. Each message says what went wrong and what to do."""

from __future__ import annotations


class Ot2WheelsError(Exception):
    """Base class: the CLI layers (tasks.py, noxfile.py) turn these into a message and exit 1."""


class ConfigError(Ot2WheelsError):
    """A recipe, target or manifest file is invalid (the message names the file and field)."""


class ToolchainError(Ot2WheelsError):
    """Host tools, sysroot or SDK missing or broken."""


class SourceError(Ot2WheelsError):
    """Source download, hash check, extraction or patching failed."""


class BuildError(Ot2WheelsError):
    """The PEP 517 build failed; the log path is in the message."""


class GateError(Ot2WheelsError):
    """A built wheel does not fit its target (wrong tag, wrong ELF, glibc too new, missing lib)."""


class SmokeError(Ot2WheelsError):
    """A wheel failed to install or to run its smoke test under qemu."""


class DownloadError(Ot2WheelsError):
    """A download failed, was truncated, or did not match its pinned sha256."""


class UnsafeArchiveError(Ot2WheelsError):
    """An archive member would land outside the extraction directory."""


class IndexBuildError(Ot2WheelsError):
    """The package index cannot be built without losing or changing a published file."""


class PlanError(Ot2WheelsError):
    """A requirement's closure cannot be resolved for a target (the message names the conflict)."""


class DockerError(Ot2WheelsError):
    """No Docker engine, or an image build, pull, push or container run failed."""


class LedgerError(Ot2WheelsError):
    """The build ledger (SQLite) cannot be opened, migrated or written."""


class DiskError(Ot2WheelsError):
    """Writing a file failed (disk full, permissions); the message names the path."""


class RecordError(Ot2WheelsError):
    """A build record (dist/<target>/<project>/*.json) is unreadable; the message names it."""
