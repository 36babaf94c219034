"""Read a TOML file, turning the two ways that fails into errors that name the file, and check
a table's keys (every loader of our TOML files refuses unknown keys the same way)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import ConfigError


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def check_keys(table: Any, allowed: Iterable[str], where: str, what: str = "field(s)") -> dict[str, Any]:
    """`table` if it is a table whose keys are all `allowed`; else a ConfigError naming `where`
    (the file, and the table inside it) and what is allowed."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    allowed = set(allowed)
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown {what} {sorted(unknown)}; allowed: {sorted(allowed)}")
    return table


def read_table(path: Path, allowed_keys: Iterable[str], what: str = "key(s)") -> dict[str, Any]:
    """The TOML file at `path`, whose top-level keys must all be in `allowed_keys`."""
    return check_keys(read_toml(path), allowed_keys, str(path), what)


def toml_str(value: str) -> str:
    """`value` as a TOML basic string (a JSON string is one)."""
    return json.dumps(value)
