"""Download one file, resumably, and hand it over only once its sha256 matches the pin.

`download(url, dest, sha256)` streams `url` into `dest.part` (next to `dest`, so the final
rename is atomic), resumes an interrupted transfer with an HTTP Range request, retries
transient failures with exponential backoff, checks the size and the sha256, and only then
renames `dest.part` to `dest`. A file at `dest` is therefore always complete and verified; a
`.part` file is never mistaken for a finished download.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from . import locks
from .errors import DownloadError
from .fsutil import sha256_file

CHUNK = 1 << 16
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# HTTP statuses worth another attempt; any other 4xx is final.
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def check_sha256_pin(sha256: str, what: str) -> str:
    """Normalise a pin to lowercase hex; refuse anything that is not 64 hex digits."""
    pin = sha256.strip().lower()
    if not _SHA256.match(pin):
        raise DownloadError(
            f"{what}: {sha256!r} is not a sha256 (64 hex digits); "
            "pin the file's real sha256 (sha256sum FILE) before downloading it"
        )
    return pin


def verify_file(path: Path, sha256: str, size: int | None = None, source: str | None = None) -> None:
    """Raise DownloadError unless `path` has the given size (if any) and sha256."""
    pin = check_sha256_pin(sha256, str(source or path))
    where = f"{path}" + (f" (from {source})" if source else "")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        kind = "truncated" if actual_size < size else "larger than pinned"
        raise DownloadError(
            f"{where} is {kind}: {actual_size} bytes, the pin says {size}. "
            "Download it again (or point at a complete copy); if the file really changed "
            "upstream, update the pinned size and sha256."
        )
    actual = sha256_file(path)
    if actual != pin:
        raise DownloadError(
            f"{where}: sha256 mismatch: expected {pin}, got {actual} ({actual_size} bytes). "
            "The file is not the pinned one (corrupted, or a different release). Nothing was "
            "used. Check the URL; if you trust this file, pin its sha256 instead."
        )


@dataclass
class _Attempt:
    """What one HTTP request produced."""

    complete: bool  # the server sent the whole body it announced
    total: int | None  # full size of the file, if the server told us


def _disk_full(exc: OSError, part: Path) -> DownloadError:
    try:
        free = shutil.disk_usage(part.parent).free
        free_s = f"{free / 1e6:.1f} MB free"
    except OSError:
        free_s = "free space unknown"
    return DownloadError(
        f"disk full while writing {part} ({free_s} on {part.parent}): {exc.strerror}. "
        "The partial download was removed. Free some space (or point OT2WHEELS_CACHE at a "
        "larger disk) and run the command again."
    )


def ca_bundle(env: dict[str, str] | None = None) -> str | None:
    """The CA bundle pip and requests are told to use, if any (the network may go through a proxy)."""
    env = dict(os.environ if env is None else env)
    for key in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if env.get(key) and Path(env[key]).is_file():
            return env[key]
    return None


def ssl_context() -> ssl.SSLContext:
    """Trust the CA bundle the machine's pip/requests use."""
    cafile = ca_bundle()
    return ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()


def _fetch_once(url: str, part: Path, timeout: float, progress: Progress | None,
                task: TaskID | None) -> _Attempt:
    """One request: resume `part` from its current size, append what arrives."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ot2wheels"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        context = ssl_context() if url.startswith("https:") else None
        resp: HTTPResponse = urllib.request.urlopen(request, timeout=timeout, context=context)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Nothing left to send: the .part already holds the whole file (or garbage
            # past its end); the size/hash check decides.
            return _Attempt(complete=True, total=None)
        raise
    with resp:
        status = resp.status
        total: int | None = None
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                # A server that answers a different range than asked: start over.
                part.unlink(missing_ok=True)
                raise _Restart(f"server answered Range bytes={offset}- with "
                               f"{resp.headers.get('Content-Range')!r}")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        else:
            offset = 0  # 200: the server ignored Range and sends everything
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None else None
            mode = "wb"
        expected_body = None if total is None else total - offset
        if progress is not None and task is not None:
            progress.update(task, total=total, completed=offset)
        received = 0
        try:
            with part.open(mode) as out:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    if progress is not None and task is not None:
                        progress.update(task, advance=len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                part.unlink(missing_ok=True)
                raise _disk_full(exc, part) from None
            raise
        complete = expected_body is None or received >= expected_body
        return _Attempt(complete=complete, total=total)


class _Restart(Exception):
    """Internal: the .part was discarded; try again from zero."""


def download(
    url: str,
    dest: Path,
    sha256: str | None,
    size: int | None = None,
    progress: bool = True,
    *,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 60.0,
) -> Path:
    """Fetch `url` to `dest`, verified against `sha256` (and `size`, if given). Returns `dest`.

    An existing `dest` with the right hash is reused without touching the network. An
    existing `dest.part` is resumed. On failure `dest` is left untouched; a `.part` file is
    kept only when resuming it later can help (connection lost), never when it is known bad.

    `sha256=None` is trust on first use: nothing to verify against, so an existing `dest`
    (whose origin is unknown) is fetched again, and the caller must hash and record the result.
    """
    pin = check_sha256_pin(sha256, url) if sha256 is not None else None
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    # one download of a file at a time (two processes, one .part)
    with locks.locked(dest.with_name(dest.name + ".lock"), dest.name):
        if dest.exists():
            try:
                if pin is None:
                    raise DownloadError("no pin to check an existing file against")
                verify_file(dest, pin, size, source=url)
                return dest
            except DownloadError:
                dest.unlink()  # stale or foreign file under our name: fetch it again
        if size is not None and part.exists() and part.stat().st_size > size:
            part.unlink()
        bar = _progress_bar() if progress else None
        last_error = ""
        try:
            if bar is not None:
                bar.start()
            task = bar.add_task(dest.name, total=size) if bar is not None else None
            for attempt in range(retries + 1):
                if attempt:
                    time.sleep(backoff * 2 ** (attempt - 1))
                try:
                    result = _fetch_once(url, part, timeout, bar, task)
                except _Restart as exc:
                    last_error = str(exc)
                    continue
                except urllib.error.HTTPError as exc:
                    if exc.code in _RETRY_STATUS:
                        last_error = f"HTTP {exc.code} {exc.reason}"
                        continue
                    raise DownloadError(
                        f"{url}: HTTP {exc.code} {exc.reason}. The file is not there (or not for "
                        "you): check the URL, or pass a mirror URL / a local file instead."
                    ) from None
                except (TimeoutError, urllib.error.URLError, HTTPException, ConnectionError) as exc:
                    last_error = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
                    continue
                if size is not None and result.total is not None and result.total != size:
                    part.unlink(missing_ok=True)
                    raise DownloadError(
                        f"{url}: the server's file is {result.total} bytes but the pin says {size}. "
                        "It is a different file than the pinned one; check the URL or update the pin."
                    )
                if not result.complete:
                    got = part.stat().st_size if part.exists() else 0
                    last_error = f"connection closed after {got} of {result.total} bytes"
                    continue
                break
            else:
                got = part.stat().st_size if part.exists() else 0
                if got and not last_error.startswith("HTTP"):
                    hint = (f"{got} bytes are kept in {part}; run the same command again to resume "
                            "from there")
                else:
                    hint = "check the URL and your network (proxy settings), then try again"
                raise DownloadError(
                    f"{url}: download failed after {retries + 1} attempts ({last_error}). {hint}."
                )
        finally:
            if bar is not None:
                bar.stop()
        try:
            if pin is not None:
                verify_file(part, pin, size, source=url)
        except DownloadError:
            part.unlink(missing_ok=True)  # a complete but wrong file is useless for resuming
            raise
        os.replace(part, dest)
        return dest


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
