"""The Buildroot SDK in the cache: pinned in `toolchain/sdk.toml`, pulled, verified, relocated.

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
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .archive import extract
from .download import check_sha256_pin, download, verify_file
from .errors import ConfigError, DownloadError, ToolchainError
from .fsutil import atomic_write
from .paths import Layout

MANIFEST = "ot2wheels-sdk.json"
LOCATION_FILE = Path("share/buildroot/sdk-location")
_PIN_KEYS = {"description", "version", "filename", "url", "sha256", "size", "python", "triplet"}


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

    @property
    def pinned(self) -> bool:
        return bool(self.sha256)


def load_pins(path: Path) -> dict[str, SdkPin]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    tables = data.get("sdk")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: needs at least one [sdk.NAME] table")
    pins = {}
    for name, t in tables.items():
        where = f"{path}: sdk.{name}"
        if not isinstance(t, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(t) - _PIN_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_PIN_KEYS)}")
        for key in ("filename", "python", "triplet"):
            if not isinstance(t.get(key), str) or not t[key]:
                raise ConfigError(f"{where}: missing field {key!r}")
        sha = t.get("sha256", "")
        if sha:
            try:
                sha = check_sha256_pin(sha, f"{where}.sha256")
            except DownloadError as exc:
                raise ConfigError(str(exc)) from None
        size = t.get("size")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise ConfigError(f"{where}.size: expected a positive number of bytes, got {size!r}")
        pins[name] = SdkPin(name=name, filename=t["filename"], python=t["python"],
                            triplet=t["triplet"], url=t.get("url", ""), sha256=sha, size=size,
                            version=t.get("version", ""), description=t.get("description", ""),
                            source=path)
    return pins


def sdk_file(layout: Layout) -> Path:
    return layout.root / "toolchain" / "sdk.toml"


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


@contextmanager
def _lock(base: Path) -> Iterator[None]:
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    sha = check_sha256_pin(sha256, "--sha256") if sha256 else pin.sha256
    if not sha:
        raise ToolchainError(
            f"{where} has no sha256 pinned yet, so nothing could be verified. Pass --sha256 HASH "
            "(sha256sum of the SDK tarball you trust) or fill in sha256 (and url, size) there."
        )
    # The pinned size belongs to the pinned hash; an overriding hash brings its own (or none).
    size = size if size is not None else (pin.size if sha == pin.sha256 else None)
    base = sdk_dir(layout, name)
    with _lock(base):
        if file is not None:
            archive = Path(file)
            if not archive.is_file():
                raise ToolchainError(f"--file {archive}: no such file")
            log(f"verifying {archive} ...")
            verify_file(archive, sha, size)
        else:
            src = url or pin.url
            if not src:
                raise ToolchainError(
                    f"{where} has no url; pass --url URL (a mirror of "
                    f"{pin.filename}) or --file PATH (a copy you already have)"
                )
            archive = download(src, base / "downloads" / pin.filename, sha, size, progress=progress)
        current = installed(layout, name)
        if (current is not None and current.sha256 == sha and (current.root / LOCATION_FILE).is_file()
                and _in_place(current, base)):
            log(f"{name} SDK {sha[:12]} already installed at {current.root}")
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
        return sdk


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
        out.append(f"  pin ({p.source}): " + (
            f"sha256 {p.sha256}" + (f", {p.size} bytes" if p.size else "") + (f", {p.url}" if p.url else "")
            if p.pinned else "NOT PINNED (sha256 to be filled in)"))
        if self.sdk is None:
            out.append("  installed: nothing (run `invoke sdk.pull`)")
            return out
        m = self.sdk.manifest
        out.append(f"  installed: {self.sdk.root}")
        out.append(f"    sha256 {m['sha256']}, from {m['source']}, at {m['installed_at']}")
        out.append(f"    sysroot {self.sdk.sysroot}, python {m['python']}, {m['triplet']}-gcc")
        verdict = {True: "yes", False: "NO: run `invoke sdk.pull` to install the pinned SDK",
                   None: "unknown (no pin to compare with)"}[self.matches_pin]
        out.append(f"  matches the pin: {verdict}")
        return out


def info(layout: Layout, name: str = "ot2", pins_file: Path | None = None) -> SdkInfo:
    return SdkInfo(pin=load_pin(layout, name, pins_file), sdk=installed(layout, name))
