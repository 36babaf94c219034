"""Get a recipe's source: download (or clone), verify sha256, extract safely, apply patches."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import Version

from . import locks
from .archive import extract as safe_extract
from .download import download, sha256_file
from .errors import DownloadError, SourceError, UnsafeArchiveError
from .fsutil import atomic_move
from .pypi import IndexClient
from .recipes import Recipe


def fetch_url(url: str, dest: Path, sha256: str, what: str) -> Path:
    """Download `url` to `dest` (resumable, retried), verified by sha256 before it is used."""
    try:
        return download(url, dest, sha256, progress=sys.stderr.isatty(), retries=2)
    except DownloadError as exc:
        raise SourceError(
            f"{what}: {exc}\n  If the upstream file really changed, check it and update "
            "[source] sha256 in the recipe."
        ) from None


def pypi_sdist_url(name: str, version: str, client: IndexClient, filename: str | None = None) -> tuple[str, str]:
    """(url, filename) of the sdist of name==version on the configured index, read through the
    index client (PEP 691, its page cache and retries); a cached page that predates the
    release is read again once."""
    for fresh in (False, True):
        reader = IndexClient(client.cache_dir.parent, client.index_url, page_ttl=0) if fresh else client
        try:
            files = reader.files(name)
        except DownloadError as exc:
            raise SourceError(f"cannot read the index page {client.project_url(name)}: {exc}") from None
        for f in files:
            if (filename and f.filename != filename) or not f.filename.endswith((".tar.gz", ".zip")):
                continue
            try:
                sname, sver = parse_sdist_filename(f.filename)
            except InvalidSdistFilename:
                continue
            if canonicalize_name(sname) == canonicalize_name(name) and sver == Version(version):
                return f.url, f.filename
    raise SourceError(f"{client.project_url(name)}: no sdist for {name}=={version}; "
                      "check [package] version in the recipe")


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
        url, filename = pypi_sdist_url(recipe.name, recipe.version, IndexClient(cache), src.filename)
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
        dest = store / tarball.name
        atomic_move(tarball, dest)  # /tmp may be another file system than the cache
        return dest


def extract(archive: Path, dest: Path) -> Path:
    """Extract safely (no absolute paths, `..` or links out of `dest`); return the source tree."""
    # archive.extract refuses unsafe members on every CPython >= 3.11 (Debian's 3.11.2 has no
    # tarfile data filter) and creates `dest` itself, atomically.
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    try:
        safe_extract(archive, dest)
    except UnsafeArchiveError as exc:
        raise SourceError(f"unsafe archive member refused: {exc}") from None
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
