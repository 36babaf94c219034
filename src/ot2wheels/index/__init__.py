"""The static package index: PEP 503 HTML, PEP 691 JSON and PEP 658 metadata, as plain files."""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: this is on the fast path

if TYPE_CHECKING:
    from typing import Any

# Loaded on first use: `invoke index.build` should not pay for the HTTP server's imports.
_EXPORTS = {
    "IndexResult": "scan", "build_index": "build", "inspect_wheel": "scan", "remove_wheels": "build",
    "WheelEntry": "model", "YankList": "model", "load_yanks": "model", "serve_index": "serve",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module  # here: the package itself is on every publish's path

    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
