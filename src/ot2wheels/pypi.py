"""A small client for the package index pip is configured to use.

Only what the planner needs: the PEP 691 JSON simple page of a project, and the core metadata
of one release file. Metadata comes from a PEP 658 `.metadata` file when the index offers one,
else from the wheel itself read with HTTP range requests (the zip's central directory and the
METADATA member only, CRC-checked), else from the sdist's PKG-INFO (whole file, sha256-checked).

Every response is cached on disk under `<cache>/index/`, keyed by URL. Pages are refreshed
after `page_ttl` seconds; file-derived data never expires (files are immutable and pinned by
their sha256). Cache entries carry the sha256 of their body and are refetched when it does
not match.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from packaging.metadata import parse_email
from packaging.utils import canonicalize_name

from .download import ssl_context
from .errors import DownloadError, SourceError
from .fsutil import atomic_write

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
_CHUNK = 64 * 1024


def _pip_default_index() -> str:
    """pip's own built-in default index (so no host name is written here)."""
    from pip._internal.models.index import PyPI  # pip is always present where we run

    return PyPI.simple_url


def configured_index_url(env: dict[str, str] | None = None) -> str:
    """The index pip would use: PIP_INDEX_URL, else `pip config` (env, user, global), else pip's default."""
    env = dict(os.environ if env is None else env)
    if env.get("PIP_INDEX_URL"):
        return env["PIP_INDEX_URL"].rstrip("/")
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, env=env, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.endswith(".index-url"):
            found[key.rsplit(".", 1)[0]] = value.strip().strip("'\"")
    for section in (":env:", "install", "download", "global"):
        if found.get(section):
            return found[section].rstrip("/")
    return _pip_default_index().rstrip("/")


@dataclass(frozen=True)
class IndexFile:
    """One file of a release, as the simple API lists it."""

    filename: str
    url: str  # absolute
    sha256: str
    requires_python: str | None
    upload_time: datetime | None
    yanked: bool
    size: int | None
    metadata_sha256: str | None  # PEP 658/714: a .metadata file exists, with this hash ("" if unhashed)

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def is_sdist(self) -> bool:
        return self.filename.endswith((".tar.gz", ".zip", ".tar.bz2", ".tgz"))


@dataclass(frozen=True)
class CoreMetadata:
    """The core metadata fields we use, read leniently with `packaging.metadata` (as pip reads them:
    a field it cannot parse is left out, not fatal; Requires-Dist lines are parsed by the caller)."""

    name: str | None
    version: str | None
    summary: str
    requires_python: str | None
    requires_dist: tuple[str, ...]

    @classmethod
    def parse(cls, data: bytes) -> CoreMetadata:
        raw, _unparsed = parse_email(data)
        return cls(name=raw.get("name"), version=raw.get("version"), summary=(raw.get("summary") or "").strip(),
                   requires_python=raw.get("requires_python"), requires_dist=tuple(raw.get("requires_dist", ())))


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def parse_simple_json(data: dict[str, Any], page_url: str) -> list[IndexFile]:
    out = []
    for f in data.get("files", []):
        sha = (f.get("hashes") or {}).get("sha256")
        if not sha:
            continue  # we only use files we can verify
        meta = f.get("core-metadata", f.get("data-dist-info-metadata"))
        if isinstance(meta, dict):
            meta_sha: str | None = meta.get("sha256", "")
        elif meta:
            meta_sha = ""
        else:
            meta_sha = None
        out.append(IndexFile(
            filename=f["filename"],
            url=urllib.parse.urljoin(page_url, f["url"]),
            sha256=sha.lower(),
            requires_python=f.get("requires-python") or None,
            upload_time=_parse_time(f.get("upload-time")),
            yanked=bool(f.get("yanked")),
            size=f.get("size"),
            metadata_sha256=meta_sha,
        ))
    return out


class _RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file, fetched in 64 KiB range requests."""

    def __init__(self, client: IndexClient, url: str, size: int) -> None:
        self._client, self._url, self._size, self._pos = client, url, size, 0
        self._blocks: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _block(self, index: int) -> bytes:
        if index not in self._blocks:
            start = index * _CHUNK
            end = min(self._size, start + _CHUNK) - 1
            self._blocks[index] = self._client.get_range(self._url, start, end)
        return self._blocks[index]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        n = min(n, self._size - self._pos)
        out = bytearray()
        while n > 0:
            index, skip = divmod(self._pos, _CHUNK)
            piece = self._block(index)[skip:skip + n]
            if not piece:
                break
            out += piece
            self._pos += len(piece)
            n -= len(piece)
        return bytes(out)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class IndexClient:
    """Reads project pages and release metadata from one index, with an on-disk cache."""

    def __init__(self, cache_dir: Path, index_url: str | None = None, page_ttl: float = 24 * 3600,
                 offline: bool = False, timeout: float = 60) -> None:
        self.index_url = (index_url or configured_index_url()).rstrip("/")
        self.cache_dir = cache_dir / "index"
        self.page_ttl = page_ttl
        self.offline = offline
        self.timeout = timeout
        self._ssl = ssl_context()
        self.requests = 0  # network requests made (tests and timing use it)

    # -- raw HTTP -------------------------------------------------------------------------
    def _open(self, url: str, headers: dict[str, str]) -> tuple[bytes, int]:
        if self.offline:
            raise DownloadError(f"{url}: not in the cache and offline mode is on; run once with network")
        if url.startswith("file:"):
            return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path)).read_bytes(), 200
        req = urllib.request.Request(url, headers={"User-Agent": "ot2wheels-plan", **headers})
        for attempt in range(3):
            try:
                self.requests += 1
                with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                    return resp.read(), resp.status
            except urllib.error.HTTPError as exc:
                if exc.code in (404, 410):
                    raise DownloadError(f"{url}: HTTP {exc.code} (not on the index)") from None
                if attempt == 2:
                    raise DownloadError(f"{url}: HTTP {exc.code}; is the index reachable?") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == 2:
                    raise DownloadError(f"{url}: {exc}; check the network and pip's index configuration") from None
            time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def get_range(self, url: str, start: int, end: int) -> bytes:
        body, status = self._open(url, {"Range": f"bytes={start}-{end}"})
        if status == 206 or url.startswith("file:"):
            return body if status == 206 else body[start:end + 1]
        return body[start:end + 1]  # server ignored Range: it sent the whole file

    # -- cache ----------------------------------------------------------------------------
    def _cache_path(self, kind: str, url: str) -> Path:
        return self.cache_dir / kind / hashlib.sha256(url.encode()).hexdigest()

    def _cache_get(self, kind: str, url: str, ttl: float | None) -> bytes | None:
        path = self._cache_path(kind, url)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            body = path.read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("url") != url or hashlib.sha256(body).hexdigest() != meta.get("sha256"):
            return None
        if ttl is not None and not self.offline and time.time() - meta.get("fetched", 0) > ttl:
            return None
        return body

    def _cache_put(self, kind: str, url: str, body: bytes) -> None:
        path = self._cache_path(kind, url)
        meta = {"url": url, "sha256": hashlib.sha256(body).hexdigest(), "fetched": time.time()}
        for target, data in ((path, body), (path.with_suffix(".json"), json.dumps(meta).encode())):
            atomic_write(target, data)  # body first, then the record that vouches for it

    # -- API ------------------------------------------------------------------------------
    def project_url(self, name: str) -> str:
        return f"{self.index_url}/{canonicalize_name(name)}/"

    def files(self, name: str) -> list[IndexFile]:
        """Every file of a project (PEP 691 JSON page)."""
        url = self.project_url(name)
        body = self._cache_get("pages", url, self.page_ttl)
        if body is None:
            body, _ = self._open(url, {"Accept": JSON_ACCEPT})
            try:
                json.loads(body)
            except ValueError:
                raise DownloadError(f"{url}: the index did not answer with PEP 691 JSON "
                                    f"(Accept: {JSON_ACCEPT}); an index with the JSON simple API is needed") from None
            self._cache_put("pages", url, body)
        return parse_simple_json(json.loads(body), url)

    def metadata(self, f: IndexFile) -> CoreMetadata:
        """Core metadata (METADATA / PKG-INFO) of one release file."""
        body = self._cache_get("metadata", f.url, None)
        if body is None:
            body = self._fetch_metadata(f)
            self._cache_put("metadata", f.url, body)
        return CoreMetadata.parse(body)

    def _fetch_metadata(self, f: IndexFile) -> bytes:
        if f.is_wheel and f.metadata_sha256 is not None:
            try:
                body, _ = self._open(f.url + ".metadata", {})
            except DownloadError:
                body = b""
            if body and (not f.metadata_sha256 or hashlib.sha256(body).hexdigest() == f.metadata_sha256):
                return body
        if f.is_wheel:
            return self._wheel_metadata_by_range(f)
        if f.is_sdist:
            return self._sdist_pkg_info(f)
        raise DownloadError(f"{f.url}: cannot read metadata from this kind of file")

    def _wheel_metadata_by_range(self, f: IndexFile) -> bytes:
        size = f.size
        if not size:
            raise DownloadError(f"{f.url}: the index does not give the file size; cannot read its metadata lazily")
        try:
            with zipfile.ZipFile(io.BufferedReader(_RangeFile(self, f.url, size), _CHUNK)) as zf:
                names = [n for n in zf.namelist()
                         if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
                if len(names) != 1:
                    raise DownloadError(f"{f.url}: expected one .dist-info/METADATA, found {names}")
                return zf.read(names[0])  # zipfile checks the member's CRC-32
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise DownloadError(f"{f.url}: could not read the wheel's METADATA: {exc}") from None

    def download(self, f: IndexFile) -> bytes:
        """The whole file, verified against the index's sha256 (cached)."""
        body = self._cache_get("files", f.url, None)
        if body is None or hashlib.sha256(body).hexdigest() != f.sha256:
            body, _ = self._open(f.url, {})
            got = hashlib.sha256(body).hexdigest()
            if got != f.sha256:
                raise DownloadError(f"{f.url}: sha256 {got} does not match the index's {f.sha256}")
            self._cache_put("files", f.url, body)
        return body

    def _sdist_pkg_info(self, f: IndexFile) -> bytes:
        data = self.download(f)
        return read_sdist_member(data, f.filename, "PKG-INFO")


def sdist_members(data: bytes, filename: str) -> list[str]:
    if filename.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return zf.namelist()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getnames()


def read_sdist_member(data: bytes, filename: str, member: str) -> bytes:
    """The file at `member` below an sdist's top folder (`NAME-VER/member`): PKG-INFO,
    pyproject.toml, or a nested path like `src/pkg.egg-info/top_level.txt`."""

    def wanted(name: str) -> bool:
        top, sep, rest = name.partition("/")
        return bool(top and sep) and rest == member

    if filename.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in zf.namelist():
                if wanted(name):
                    return zf.read(name)
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            for info in tf.getmembers():
                if info.isfile() and wanted(info.name):
                    fh = tf.extractfile(info)
                    assert fh is not None
                    return fh.read()
    raise SourceError(f"{filename}: no {member} below its top folder")
