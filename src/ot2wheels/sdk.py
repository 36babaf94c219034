"""The Buildroot SDK in the cache: pinned in `toolchain/sdk.toml`, pulled, verified, relocated.

Pinning, strongest first: `--sha256` on the command line; `sha256` in `toolchain/sdk.toml`;
`toolchain/sdk.lock`, written by the first pull of an SDK that had no hash pinned (trust on
first use: the download is hashed and recorded, loudly, and every later pull must match it;
commit the lock file). A lock entry belongs to one url + filename: changing either in
sdk.toml makes the stale entry an error, not a silent re-trust.

Cache layout, per SDK name (e.g. `ot2`):

    <cache>/sdk/<name>/downloads/<filename>     the verified tarball
    <cache>/sdk/<name>/<id>/<sdk-dir>/           an unpacked, relocated SDK
    <cache>/sdk/<name>/<id>/ot2wheels-sdk.json   written last: the install is complete
    <cache>/sdk/<name>/current -> <id>           the SDK builds use, swapped atomically

A Buildroot SDK writes its own absolute path into its files when `relocate-sdk.sh` runs, so
it must be relocated where it will stay: it is unpacked into a fresh directory nobody
refers to yet, relocated and checked there, and only then published by atomically
replacing the `current` link. Any failure removes that directory; `current` never points
at a half-installed SDK.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from . import locks
from .archive import extract
from .download import check_sha256_pin, download, sha256_file, verify_file
from .errors import ConfigError, DownloadError, ToolchainError
from .fsutil import atomic_write
from .paths import Layout
from .tomlfile import check_keys, read_table, toml_str

MANIFEST = "ot2wheels-sdk.json"
LOCATION_FILE = Path("share/buildroot/sdk-location")
_PIN_KEYS = {"description", "version", "filename", "url", "sha256", "size", "python", "triplet"}
_LOCK_KEYS = {"url", "filename", "sha256", "size", "trusted_at"}


class PinStatus(Enum):
    PINNED = "pinned"  # sha256 in sdk.toml
    TRUSTED_ON_FIRST_USE = "trusted-on-first-use"  # sha256 recorded in sdk.lock by a first pull
    UNPINNED = "unpinned"  # nothing yet: the next pull trusts what it gets and records it


@dataclass(frozen=True)
class LockEntry:
    """One [sdk.NAME] of sdk.lock: what the first pull got, to hold every later pull to."""

    name: str
    url: str
    filename: str
    sha256: str
    size: int
    trusted_at: str


@dataclass(frozen=True)
class SdkPin:
    name: str
    filename: str
    python: str
    triplet: str
    url: str = ""
    sha256: str = ""  # "" = not pinned yet
    size: int | None = None
    version: str = ""
    description: str = ""
    source: Path | None = None
    status: PinStatus = PinStatus.UNPINNED
    lock: LockEntry | None = None  # the sdk.lock entry the sha256 came from, if it did

    @property
    def pinned(self) -> bool:
        return bool(self.sha256)

    @property
    def lock_file(self) -> Path | None:
        return lock_file_for(self.source) if self.source else None


def lock_file_for(pins_file: Path) -> Path:
    """toolchain/sdk.toml -> toolchain/sdk.lock (beside it, committed with it)."""
    return pins_file.with_suffix(".lock")


def _sdk_tables(path: Path, tables: Any, allowed: set[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(name, where, table) of each [sdk.NAME] of `path`, with unknown fields refused."""
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: expected [sdk.NAME] tables")
    for name, t in tables.items():
        where = f"{path}: sdk.{name}"
        yield name, where, check_keys(t, allowed, where)


def _sha256_field(value: Any, where: str) -> str:
    try:
        return check_sha256_pin(str(value), f"{where}.sha256")
    except DownloadError as exc:
        raise ConfigError(str(exc)) from None


def _size_field(value: Any, where: str) -> int:
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}.size: expected a positive number of bytes, got {value!r}")
    return value


def load_lock(path: Path) -> dict[str, LockEntry]:
    """The entries of an sdk.lock (none if the file does not exist), validated."""
    if not path.is_file():
        return {}
    out = {}
    for name, where, t in _sdk_tables(path, read_table(path, {"sdk"}).get("sdk", {}), _LOCK_KEYS):
        missing = sorted(_LOCK_KEYS - set(t))
        if missing:
            raise ConfigError(f"{where}: missing field(s) {missing}; delete the entry to trust the "
                              "next download again")
        out[name] = LockEntry(name=name, url=str(t["url"]), filename=str(t["filename"]),
                              sha256=_sha256_field(t["sha256"], where), size=_size_field(t["size"], where),
                              trusted_at=str(t["trusted_at"]))
    return out


def render_lock(entries: dict[str, LockEntry]) -> str:
    lines = [
        "# Written by `invoke sdk.pull` (trust on first use): the sha256 and size of the SDK",
        "# tarball the first pull downloaded while toolchain/sdk.toml pinned no sha256.",
        "# Commit this file: every later pull, here or elsewhere, is verified against it.",
        "# To trust a different file, delete its entry (or pin sha256 in sdk.toml) and pull again.",
    ]
    for e in sorted(entries.values(), key=lambda e: e.name):
        lines += ["", f"[sdk.{e.name}]", f"url = {toml_str(e.url)}", f"filename = {toml_str(e.filename)}",
                  f"sha256 = {toml_str(e.sha256)}", f"size = {e.size}", f"trusted_at = {toml_str(e.trusted_at)}"]
    return "\n".join(lines) + "\n"


def _record_lock(pin: SdkPin, sha256: str, size: int) -> LockEntry:
    path = pin.lock_file
    assert path is not None
    entries = load_lock(path)
    entry = LockEntry(name=pin.name, url=pin.url, filename=pin.filename, sha256=sha256, size=size,
                      trusted_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    entries[pin.name] = entry
    atomic_write(path, render_lock(entries))
    return entry


def _with_lock(pin: SdkPin, entries: dict[str, LockEntry]) -> SdkPin:
    """`pin` completed from its sdk.lock entry (when sdk.toml pins no sha256 itself)."""
    if pin.sha256:
        return replace(pin, status=PinStatus.PINNED)
    entry = entries.get(pin.name)
    if entry is None:
        return pin
    if (entry.url, entry.filename) != (pin.url, pin.filename):
        raise ConfigError(
            f"{pin.lock_file}: [sdk.{pin.name}] was trusted for {entry.filename} from {entry.url or '(a file)'}, "
            f"but {pin.source} now names {pin.filename} from {pin.url or '(no url)'}; delete that "
            "entry to trust the new download on first use, or pin its sha256 in sdk.toml"
        )
    return replace(pin, sha256=entry.sha256, size=pin.size or entry.size,
                   status=PinStatus.TRUSTED_ON_FIRST_USE, lock=entry)


def load_pins(path: Path) -> dict[str, SdkPin]:
    tables = read_table(path, {"sdk"}).get("sdk")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: needs at least one [sdk.NAME] table")
    pins = {}
    for name, where, t in _sdk_tables(path, tables, _PIN_KEYS):
        for key in ("filename", "python", "triplet"):
            if not isinstance(t.get(key), str) or not t[key]:
                raise ConfigError(f"{where}: missing field {key!r}")
        sha = _sha256_field(t["sha256"], where) if t.get("sha256") else ""
        size = _size_field(t["size"], where) if t.get("size") is not None else None
        pins[name] = SdkPin(name=name, filename=t["filename"], python=t["python"],
                            triplet=t["triplet"], url=t.get("url", ""), sha256=sha, size=size,
                            version=t.get("version", ""), description=t.get("description", ""),
                            source=path)
    locked = load_lock(lock_file_for(path))
    return {name: _with_lock(pin, locked) for name, pin in pins.items()}


def sdk_file(layout: Layout) -> Path:
    return layout.sdk_file


def load_pin(layout: Layout, name: str = "ot2", path: Path | None = None) -> SdkPin:
    path = path or sdk_file(layout)
    pins = load_pins(path)
    if name not in pins:
        raise ConfigError(f"{path}: no [sdk.{name}] table; known SDKs: {', '.join(sorted(pins))}")
    return pins[name]


@dataclass(frozen=True)
class InstalledSdk:
    """A complete, relocated SDK in the cache."""

    name: str
    root: Path  # holds relocate-sdk.sh, environment-setup, bin/, <triplet>/sysroot
    manifest: dict[str, Any]

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]

    @property
    def triplet(self) -> str:
        return self.manifest["triplet"]

    @property
    def sysroot(self) -> Path:
        return self.root / self.triplet / "sysroot"

    @property
    def environment_setup(self) -> Path:
        return self.root / "environment-setup"

    @property
    def host_python(self) -> Path:
        return self.root / "bin" / "python3"


def sdk_dir(layout: Layout, name: str) -> Path:
    return layout.cache / "sdk" / name


def installed(layout: Layout, name: str = "ot2") -> InstalledSdk | None:
    """The SDK `current` points at, or None if none is installed."""
    base = sdk_dir(layout, name)
    current = base / "current"
    manifest = current / MANIFEST
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    return InstalledSdk(name=name, root=Path(data["path"]), manifest=data)


def require_installed(layout: Layout, name: str = "ot2") -> InstalledSdk:
    sdk = installed(layout, name)
    if sdk is None:
        raise ToolchainError(
            f"no {name!r} SDK installed in {sdk_dir(layout, name)}; run `invoke sdk.pull` "
            "(or `invoke sdk.pull --file PATH --sha256 HASH` with a tarball you already have)"
        )
    if not _in_place(sdk, sdk_dir(layout, name)):
        # relocate-sdk.sh wrote the install path into the SDK's files: it cannot just move
        raise ToolchainError(
            f"the {name!r} SDK in {sdk_dir(layout, name)} was relocated to {sdk.root} when installed: "
            "the cache was moved or copied since. Run `invoke sdk.pull` again to install it here"
        )
    return sdk


def _in_place(sdk: InstalledSdk, base: Path) -> bool:
    """The SDK was relocated where `current` points now (not at a cache's earlier path)."""
    return sdk.root.is_relative_to((base / "current").resolve())


def _sdk_root(unpacked: Path, archive: Path) -> Path:
    """The directory holding relocate-sdk.sh: the tarball's top directory, or its root."""
    for cand in (unpacked, *sorted(p for p in unpacked.iterdir() if p.is_dir() and not p.is_symlink())):
        if (cand / "relocate-sdk.sh").is_file():
            return cand
    raise ToolchainError(
        f"{archive}: no relocate-sdk.sh at the top of the archive; this is not a Buildroot SDK "
        "tarball (`make sdk` produces <triplet>_sdk-buildroot.tar.gz)"
    )


def _relocate(root: Path, archive: Path) -> None:
    script = root / "relocate-sdk.sh"
    result = subprocess.run(["bash", str(script)], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "LC_ALL": "C"}, timeout=1800)
    if result.returncode != 0:
        raise ToolchainError(
            f"relocate-sdk.sh of {archive} failed (exit {result.returncode}) in {root}:\n"
            f"{(result.stdout + result.stderr)[-2000:]}\n"
            "  that unpacked SDK was removed again (nothing changed in the cache); check the "
            "archive is a complete Buildroot SDK"
        )
    loc = root / LOCATION_FILE
    if not loc.is_file() or loc.read_text().strip() != str(root):
        found = loc.read_text().strip() if loc.is_file() else "(missing)"
        raise ToolchainError(
            f"{script} ran but {loc} says {found!r}, not {str(root)!r}: the SDK was not relocated"
        )


def _check_layout(root: Path, triplet: str, python: str, archive: Path) -> None:
    want = {
        "environment-setup": root / "environment-setup",
        "host python3": root / "bin" / "python3",
        f"{triplet}-gcc": root / "bin" / f"{triplet}-gcc",
        "sysroot": root / triplet / "sysroot",
        f"target python{python}": root / triplet / "sysroot" / "usr" / "lib" / f"python{python}",
    }
    missing = [f"{what} ({path.relative_to(root)})" for what, path in want.items() if not path.exists()]
    if missing:
        raise ToolchainError(
            f"{archive}: the SDK lacks {', '.join(missing)}; is it an SDK for CPython {python} "
            f"with triplet {triplet}? (see toolchain/sdk.toml)"
        )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True))


def _point_current(base: Path, install_id: str) -> None:
    tmp = base / f".current.{secrets.token_hex(4)}"
    tmp.symlink_to(install_id)
    os.replace(tmp, base / "current")


def _clean_others(base: Path, keep: str) -> None:
    """Remove installs `current` no longer points at, and leftovers of interrupted pulls."""
    for p in base.iterdir():
        if p.name in (keep, "downloads", "current", ".lock") or p.is_symlink() or not p.is_dir():
            continue
        shutil.rmtree(p, ignore_errors=True)


def pull(
    layout: Layout,
    name: str = "ot2",
    url: str | None = None,
    file: Path | None = None,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    pins_file: Path | None = None,
    log=print,
) -> InstalledSdk:
    """Download (or take `file`), verify, unpack safely, relocate, publish atomically."""
    pin = load_pin(layout, name, pins_file)
    where = f"{pin.source}: [sdk.{name}]"
    sha: str | None = check_sha256_pin(sha256, "--sha256") if sha256 else (pin.sha256 or None)
    verified_by = ("--sha256" if sha256 else
                   {PinStatus.PINNED: str(pin.source), PinStatus.TRUSTED_ON_FIRST_USE: str(pin.lock_file),
                    PinStatus.UNPINNED: "nothing (trusted on first use)"}[pin.status])
    # The pinned size belongs to the pinned hash; an overriding hash brings its own (or none).
    size = size if size is not None else (pin.size if sha == pin.sha256 else None)
    base = sdk_dir(layout, name)
    with locks.locked(base / ".lock", f"the SDK at {base}"):
        if file is not None:
            archive = Path(file)
            if not archive.is_file():
                raise ToolchainError(f"--file {archive}: no such file")
            log(f"verifying {archive} ...")
            if sha is not None:
                verify_file(archive, sha, size)
        else:
            src = url or pin.url
            if not src:
                raise ToolchainError(
                    f"{where} has no url; pass --url URL (a mirror of "
                    f"{pin.filename}) or --file PATH (a copy you already have)"
                )
            archive = download(src, base / "downloads" / pin.filename, sha, size, progress=progress)
        trusted_now = sha is None
        if sha is None:
            sha = sha256_file(archive)
            origin = str(archive) if file is not None else (url or pin.url)
            _warn_trust_on_first_use(pin, archive, sha, origin, log)
        current = installed(layout, name)
        if (current is not None and current.sha256 == sha and (current.root / LOCATION_FILE).is_file()
                and _in_place(current, base)):
            log(f"{name} SDK {sha[:12]} already installed at {current.root}")
            if trusted_now:
                _record_trust(pin, sha, archive, log)
            return current
        install_id = f"{sha[:12]}-{secrets.token_hex(3)}"
        target_dir = base / install_id
        try:
            log(f"unpacking {archive.name} ...")
            try:
                extract(archive, target_dir)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise ToolchainError(
                        f"disk full while unpacking the SDK into {target_dir}; nothing was installed. "
                        "Free some space (or set OT2WHEELS_CACHE to a larger disk) and run again."
                    ) from None
                raise
            # relocate-sdk.sh records its real path (symlinks resolved): so do we
            root = _sdk_root(target_dir, archive).resolve()
            log(f"relocating to {root} ...")
            _relocate(root, archive)
            _check_layout(root, pin.triplet, pin.python, archive)
            manifest = {
                "name": name,
                "sha256": sha,
                "size": archive.stat().st_size,
                "source": str(archive) if file is not None else (url or pin.url),
                "filename": pin.filename,
                "version": pin.version if sha == pin.sha256 else "",
                "verified_by": verified_by,
                "python": pin.python,
                "triplet": pin.triplet,
                "path": str(root),
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            _write_json(target_dir / MANIFEST, manifest)
            _point_current(base, install_id)
        except BaseException:
            shutil.rmtree(target_dir, ignore_errors=True)
            raise
        _clean_others(base, install_id)
        sdk = installed(layout, name)
        assert sdk is not None
        log(f"{name} SDK ready: {sdk.root}")
        if trusted_now:
            _record_trust(pin, sha, archive, log)
        return sdk


def _warn_trust_on_first_use(pin: SdkPin, archive: Path, sha: str, origin: str, log) -> None:
    bar = "!" * 78
    log("\n".join([
        bar,
        f"WARNING: TRUST ON FIRST USE. {pin.source} pins no sha256 for [sdk.{pin.name}] and",
        f"{pin.lock_file} has no entry for it, so {pin.filename} from",
        f"  {origin}",
        "was NOT verified against anything. It is used as it is, and its hash is recorded:",
        f"  sha256 {sha}",
        f"  size   {archive.stat().st_size} bytes",
        "If you can, compare that hash with a copy obtained another way. Once the SDK is",
        f"installed, commit {pin.lock_file}: every later pull is verified against it.",
        bar,
    ]))


def _record_trust(pin: SdkPin, sha: str, archive: Path, log) -> None:
    """After a successful install of an unpinned SDK (only then): record it in sdk.lock."""
    _record_lock(pin, sha, archive.stat().st_size)
    log(f"recorded sha256 {sha} ({archive.stat().st_size} bytes) in {pin.lock_file}: commit it")


@dataclass(frozen=True)
class SdkInfo:
    pin: SdkPin
    sdk: InstalledSdk | None

    @property
    def matches_pin(self) -> bool | None:
        """True/False when both exist; None when nothing is installed or nothing is pinned."""
        if self.sdk is None or not self.pin.pinned:
            return None
        return self.sdk.sha256 == self.pin.sha256

    def lines(self) -> list[str]:
        p = self.pin
        out = [f"SDK {p.name}: {p.description}".rstrip(": ")]
        what = f"sha256 {p.sha256}" + (f", {p.size} bytes" if p.size else "") + (f", {p.url}" if p.url else "")
        if p.status is PinStatus.PINNED:
            out.append(f"  pin: pinned in {p.source}: {what}")
        elif p.status is PinStatus.TRUSTED_ON_FIRST_USE:
            assert p.lock is not None
            out.append(f"  pin: trusted-on-first-use, recorded in {p.lock_file} at {p.lock.trusted_at}: {what}")
        else:
            out.append(f"  pin: unpinned: no sha256 in {p.source} or {p.lock_file}; the next "
                       "`invoke sdk.pull` trusts what it downloads and records it there")
        if self.sdk is None:
            out.append("  installed: nothing (run `invoke sdk.pull`)")
            return out
        m = self.sdk.manifest
        out.append(f"  installed: {self.sdk.root}")
        out.append(f"    sha256 {m['sha256']}, from {m['source']}, at {m['installed_at']}")
        if m.get("verified_by"):
            out.append(f"    checked at install against: {m['verified_by']}")
        out.append(f"    sysroot {self.sdk.sysroot}, python {m['python']}, {m['triplet']}-gcc")
        verdict = {True: "yes", False: "NO: run `invoke sdk.pull` to install the pinned SDK",
                   None: "unknown (no pin to compare with)"}[self.matches_pin]
        out.append(f"  verified (matches the pin): {verdict}")
        return out


def info(layout: Layout, name: str = "ot2", pins_file: Path | None = None) -> SdkInfo:
    return SdkInfo(pin=load_pin(layout, name, pins_file), sdk=installed(layout, name))
