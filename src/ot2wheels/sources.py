"""Get a recipe's source: download (or clone), verify sha256, extract safely, apply patches."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename

from . import locks
from .errors import SourceError
from .recipes import Recipe

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def index_url() -> str:
    """The package index pip is configured with (PIP_INDEX_URL, pip config), else pip's default."""
    if url := os.environ.get("PIP_INDEX_URL"):
        return url.rstrip("/")
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().rstrip("/")
    except OSError:
        pass
    from pip._internal.models.index import PyPI  # pip's own default, not a name we hard-code

    return PyPI.simple_url.rstrip("/")


def ssl_context() -> ssl.SSLContext:
    """Trust the CA bundle the machine's pip/requests use (the network may go through a proxy)."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if (path := os.environ.get(var)) and Path(path).is_file():
            return ssl.create_default_context(cafile=path)
    return ssl.create_default_context()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_url(url: str, dest: Path, sha256: str, what: str) -> Path:
    """Download `url` to `dest`, verifying sha256 before the file appears under its name."""
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, context=ssl_context(), timeout=120) as resp:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                h.update(chunk)
                out.write(chunk)
        got = h.hexdigest()
        if got != sha256:
            raise SourceError(
                f"{what}: sha256 mismatch for {url}\n  expected {sha256}\n  got      {got}\n"
                "  The file is not the one the recipe pins. If the upstream file really changed, "
                "check it and update [source] sha256 in the recipe."
            )
        tmp.replace(dest)
        return dest
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(f"{what}: cannot download {url}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def pypi_sdist_url(name: str, version: str, filename: str | None = None) -> tuple[str, str]:
    """(url, filename) of the sdist of name==version on the configured index (PEP 691 JSON)."""
    page = f"{index_url()}/{canonicalize_name(name)}/"
    req = urllib.request.Request(page, headers={"Accept": SIMPLE_JSON})
    try:
        with urllib.request.urlopen(req, context=ssl_context(), timeout=60) as resp:
            data = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SourceError(f"cannot read the index page {page}: {exc}") from None
    for f in data.get("files", []):
        fn = f["filename"]
        if filename and fn != filename:
            continue
        if not fn.endswith((".tar.gz", ".zip")):
            continue
        try:
            sname, sver = parse_sdist_filename(fn)
        except Exception:
            continue
        if canonicalize_name(sname) == canonicalize_name(name) and str(sver) == version:
            return urllib.parse.urljoin(page, f["url"]), fn
    raise SourceError(f"{page}: no sdist for {name}=={version}; check [package] version in the recipe")


def fetch_source(recipe: Recipe, cache: Path) -> Path:
    """The recipe's source archive in the cache, verified against its pinned sha256."""
    with locks.cache_lock(cache, f"source-{recipe.source.sha256}"):  # one download per file
        return _fetch_source(recipe, cache)


def _fetch_source(recipe: Recipe, cache: Path) -> Path:
    src = recipe.source
    store = cache / "sources" / src.sha256[:2] / src.sha256
    existing = [p for p in store.glob("*") if not p.name.startswith(".")] if store.is_dir() else []
    if existing and sha256_file(existing[0]) == src.sha256:
        return existing[0]
    what = f"{recipe.path} [source]"
    if src.kind == "pypi":
        url, filename = pypi_sdist_url(recipe.name, recipe.version, src.filename)
        return fetch_url(url, store / filename, src.sha256, what)
    if src.kind == "url":
        assert src.url
        filename = src.filename or Path(urllib.parse.urlparse(src.url).path).name
        return fetch_url(src.url, store / filename, src.sha256, what)
    return _git_archive(recipe, store, what)


def _git_archive(recipe: Recipe, store: Path, what: str) -> Path:
    """Clone the tag, export it with `git archive` (tar) and verify that tarball's sha256."""
    src = recipe.source
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "repo"
        r = subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", src.tag or "", src.git or "", str(clone)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SourceError(f"{what}: cannot clone {src.git} at tag {src.tag}: {r.stderr.strip()}")
        tarball = Path(tmp) / f"{recipe.name}-{recipe.version}.tar"
        subprocess.run(["git", "-C", str(clone), "archive", "--format=tar",
                        f"--prefix={recipe.name}-{recipe.version}/", "-o", str(tarball), "HEAD"], check=True)
        got = sha256_file(tarball)
        if got != src.sha256:
            raise SourceError(f"{what}: sha256 mismatch for `git archive` of {src.git}@{src.tag}\n"
                              f"  expected {src.sha256}\n  got      {got}")
        store.mkdir(parents=True, exist_ok=True)
        dest = store / tarball.name
        shutil.move(str(tarball), dest)
        return dest


def extract(archive: Path, dest: Path) -> Path:
    """Extract safely (no absolute paths, `..` or links out of `dest`); return the source tree."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if not (dest / member).resolve().is_relative_to(dest.resolve()):
                        raise SourceError(f"{archive}: member {member!r} would land outside {dest}")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise SourceError(f"{archive}: unsafe archive member refused: {exc}") from None
    entries = [p for p in dest.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest


def apply_patches(recipe: Recipe, tree: Path) -> None:
    """Apply [build] patches in order; a patch that does not apply names itself and the recipe."""
    for patch in recipe.patches:
        check = subprocess.run(["patch", "-p1", "--dry-run", "--batch", "--forward", "-i", str(patch)],
                               cwd=tree, capture_output=True, text=True)
        if check.returncode != 0:
            raise SourceError(
                f"{recipe.path} [build] patches: {patch.name} does not apply to "
                f"{recipe.name} {recipe.version}:\n{(check.stdout + check.stderr).strip()[-1500:]}"
            )
        subprocess.run(["patch", "-p1", "--batch", "--forward", "-i", str(patch)], cwd=tree,
                       capture_output=True, check=True)
