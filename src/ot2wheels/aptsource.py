"""Which Debian mirror to use: the one the host's apt is already configured with.

Reading it from the host's apt sources keeps mirror host names out of our code and follows
whatever proxy or snapshot the machine's owner chose.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ToolchainError

APT_DIR = Path("/etc/apt")


def _deb822_uris(text: str) -> list[tuple[str, list[str]]]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            for uri in fields.get("uris", "").split():
                out.append((uri, fields.get("suites", "").split()))
    return out


def _one_line_uris(text: str) -> list[tuple[str, list[str]]]:
    out = []
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()  # type: ignore[assignment]
        if len(line) >= 3 and line[0] == "deb":
            out.append((line[1], [line[2]]))
    return out


def host_sources(apt_dir: Path = APT_DIR) -> list[tuple[str, list[str]]]:
    """(URI, suites) pairs of the host's enabled binary apt sources."""
    found = []
    main = apt_dir / "sources.list"
    if main.is_file():
        found += _one_line_uris(main.read_text())
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for f in sorted(parts.iterdir()):
            if f.suffix == ".sources":
                found += _deb822_uris(f.read_text())
            elif f.suffix == ".list":
                found += _one_line_uris(f.read_text())
    return found


def debian_mirror(apt_dir: Path = APT_DIR) -> str:
    """The host's main Debian archive URI (not the security one)."""
    for uri, suites in host_sources(apt_dir):
        if "security" in uri or all(s.endswith("-security") for s in suites):
            continue
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    raise ToolchainError(
        f"no Debian archive found in {apt_dir}/sources.list(.d); set `mirror = \"...\"` in the "
        "target's [targets.NAME.debian] table of toolchain/targets.toml"
    )
