"""The static package index: PEP 503 HTML, PEP 691 JSON and PEP 658 metadata, as plain files."""

from .build import IndexResult, build_index, inspect_wheel, remove_wheels
from .model import WheelEntry, YankList, load_yanks
from .serve import serve_index

__all__ = ["IndexResult", "WheelEntry", "YankList", "build_index", "inspect_wheel", "load_yanks",
           "remove_wheels", "serve_index"]
