"""Where things live: the project tree and the per-user cache."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def find_project_root(start: Path | None = None) -> Path:
    """The nearest directory above `start` holding toolchain/targets.toml."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "toolchain" / "targets.toml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no toolchain/targets.toml above {here}; run from an ot2wheels checkout or pass --root"
    )


def default_cache_dir() -> Path:
    """OT2WHEELS_CACHE, else $XDG_CACHE_HOME/ot2wheels, else ~/.cache/ot2wheels."""
    if env := os.environ.get("OT2WHEELS_CACHE"):
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "ot2wheels"


@dataclass(frozen=True)
class Layout:
    """The directories one run reads and writes."""

    root: Path  # the checkout: packages/, toolchain/, index/
    cache: Path  # toolchains, sdists, build environments
    dist: Path  # dist/<target>/<project>/<wheel> + <wheel>.json + <wheel>.log

    @classmethod
    def discover(
        cls, root: Path | None = None, cache: Path | None = None, dist: Path | None = None
    ) -> Layout:
        r = find_project_root(root)
        return cls(root=r, cache=cache or default_cache_dir(), dist=dist or r / "dist")

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    @property
    def targets_file(self) -> Path:
        return self.root / "toolchain" / "targets.toml"

    @property
    def sdk_file(self) -> Path:
        return self.root / "toolchain" / "sdk.toml"

    @property
    def yanked_file(self) -> Path:
        return self.root / "toolchain" / "yanked.toml"

    @property
    def dockerfile(self) -> Path:
        return self.root / "toolchain" / "Dockerfile"

    def plan_dir(self, target: str) -> Path:
        """Where `invoke plan` and closure builds write a target's plans and constraints."""
        return self.root / "build" / "plan" / target

    @property
    def index(self) -> Path:
        return self.root / "index"
