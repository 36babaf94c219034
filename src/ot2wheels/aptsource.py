"""Which Debian mirror to use: the one the host's apt is already configured with.

Reading it from the host's apt sources keeps mirror host names out of our code and follows
whatever proxy or snapshot the machine's owner chose.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from .errors import ToolchainError

APT_DIR = Path("/etc/apt")
DEBOOTSTRAP = Path("/usr/share/debootstrap")
MIRROR_ENV = "OT2WHEELS_DEBIAN_MIRROR"


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


def debootstrap_default(suite: str, debootstrap: Path | None = None) -> str | None:
    """The Debian archive debootstrap itself uses for `suite` (its script's `default_mirror`, or
    the `DEF_MIRROR` of the debootstrap program when it is a Debian archive)."""
    debootstrap = DEBOOTSTRAP if debootstrap is None else debootstrap
    script = debootstrap / "scripts" / suite
    texts = []
    for source in (script, debootstrap.parent.parent / "sbin" / "debootstrap"):
        with contextlib.suppress(OSError):  # either may be missing: debootstrap is optional
            texts.append(source.read_text())
    for text in texts:
        m = re.search(r'^\s*(?:default_mirror\s+|DEF_MIRROR=")(\S+?)"?\s*$', text, re.M)
        if m and m.group(1).rstrip("/").endswith("/debian"):
            return m.group(1).rstrip("/")
    return None


def debian_mirror(apt_dir: Path | None = None, *, suite: str = "bookworm", debootstrap: Path | None = None,
                  env: dict[str, str] | None = None) -> str:
    """The Debian archive to fetch target packages from: $OT2WHEELS_DEBIAN_MIRROR if set, else the
    host's own Debian archive (not the security one), else, on a host without one (an Ubuntu CI
    runner), the archive debootstrap uses by default. Whichever it is, apt verifies what it
    fetches with the Debian keyring the target names (`signed-by=`)."""
    env = dict(os.environ) if env is None else env
    apt_dir = APT_DIR if apt_dir is None else apt_dir  # read at call time: tests point it elsewhere
    debootstrap = DEBOOTSTRAP if debootstrap is None else debootstrap
    if env.get(MIRROR_ENV):
        return env[MIRROR_ENV].rstrip("/")
    for uri, suites in host_sources(apt_dir):
        if "security" in uri or all(s.endswith("-security") for s in suites):
            continue
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    fallback = debootstrap_default(suite, debootstrap)
    if fallback:
        return fallback
    raise ToolchainError(
        f"no Debian archive found in {apt_dir}/sources.list(.d) and no debootstrap defaults in {debootstrap}; "
        f"set {MIRROR_ENV}, install debootstrap, or set `mirror = \"...\"` in the target's "
        "[targets.NAME.debian] table of toolchain/targets.toml"
    )
