import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from conftest import make_tiny_sdist, serve_directory, sha, write_tiny_recipe
from hostile import symlink_chain_tarball

from ot2wheels.errors import SourceError
from ot2wheels.recipes import load_recipe
from ot2wheels.sources import apply_patches, extract, fetch_source, fetch_url


def test_fetch_verifies_and_caches(tmp_path: Path) -> None:
    sdist = make_tiny_sdist(tmp_path)
    with serve_directory(tmp_path) as url:
        recipe = load_recipe(write_tiny_recipe(tmp_path / "packages", f"{url}/{sdist.name}", sha(sdist)))
        got = fetch_source(recipe, tmp_path / "cache")
    assert got.read_bytes() == sdist.read_bytes()
    # Served from the cache now: the server is gone.
    assert fetch_source(recipe, tmp_path / "cache") == got


def test_tampered_sdist_is_refused_and_not_kept(tmp_path: Path) -> None:
    sdist = make_tiny_sdist(tmp_path)
    pinned = sha(sdist)
    with sdist.open("ab") as f:
        f.write(b"tampered")
    with serve_directory(tmp_path) as url:
        recipe = load_recipe(write_tiny_recipe(tmp_path / "packages", f"{url}/{sdist.name}", pinned))
        with pytest.raises(SourceError) as err:
            fetch_source(recipe, tmp_path / "cache")
    msg = str(err.value)
    assert "sha256 mismatch" in msg and pinned in msg and sha(sdist) in msg and "recipe.toml" in msg
    kept = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert not kept, f"a bad download was kept: {kept}"


def test_unreachable_url_names_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"127\.0\.0\.1:9/none\.tar\.gz"):
        fetch_url("http://127.0.0.1:9/none.tar.gz", tmp_path / "x.tar.gz", "0" * 64, "test")


def test_extract_refuses_path_escapes(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        data = b"owned"
        info = tarfile.TarInfo("pkg-1.0/../../escaped.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(SourceError, match="unsafe archive member"):
        extract(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_symlink_chain_path_max_escape_is_refused(tmp_path: Path) -> None:
    """CVE-2025-4517 through a `kind = "url"` recipe source, served from 127.0.0.1."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "srv").mkdir()
    arc = symlink_chain_tarball(tmp_path / "srv" / "tiny-1.0.tar", outside)
    with serve_directory(tmp_path / "srv") as url:
        recipe = load_recipe(write_tiny_recipe(tmp_path / "packages", f"{url}/{arc.name}", sha(arc)))
        got = fetch_source(recipe, tmp_path / "cache")
    with pytest.raises(SourceError, match="refusing to extract member 'a/b/"):
        extract(got, tmp_path / "work" / "src")
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "work" / "src").exists()


def test_patches_apply_or_name_the_patch(tmp_path: Path) -> None:
    sdist = make_tiny_sdist(tmp_path)
    tree = extract(sdist, tmp_path / "src")
    recipe_path = write_tiny_recipe(tmp_path / "packages", "http://127.0.0.1/x", sha(sdist),
                                    extra_build='patches = ["fix.patch"]')
    (recipe_path.parent / "fix.patch").write_text(
        "--- a/tiny/__init__.py\n+++ b/tiny/__init__.py\n@@ -1 +1,2 @@\n from ._tiny import add\n+PATCHED = True\n"
    )
    apply_patches(load_recipe(recipe_path), tree)
    assert "PATCHED = True" in (tree / "tiny" / "__init__.py").read_text()
    # Applying again no longer fits (already applied): a clear error naming the patch.
    with pytest.raises(SourceError, match=r"fix\.patch does not apply"):
        apply_patches(load_recipe(recipe_path), tree)


def test_git_tag_source_is_verified(tmp_path: Path) -> None:
    """A `kind = "git"` source: clone the tag, `git archive` it, check the pinned sha256."""
    import subprocess

    repo = tmp_path / "upstream"
    tree = extract(make_tiny_sdist(tmp_path), repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(tree)]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "v1"], ["tag", "v1.0"]):
        subprocess.run(git + args, check=True)
    expected = subprocess.run([*git, "archive", "--format=tar", "--prefix=tiny-1.0/", "v1.0"],
                              check=True, capture_output=True).stdout
    pinned = hashlib.sha256(expected).hexdigest()
    packages = tmp_path / "packages" / "tiny"
    packages.mkdir(parents=True)
    recipe_text = ('[package]\nname = "tiny"\nversion = "1.0"\n[source]\nkind = "git"\n'
                   f'git = "file://{tree}"\ntag = "v1.0"\nsha256 = "{{sha}}"\n'
                   '[smoke]\nimports = ["tiny"]\n')
    (packages / "recipe.toml").write_text(recipe_text.format(sha=pinned))
    got = fetch_source(load_recipe(packages / "recipe.toml"), tmp_path / "cache")
    assert got.read_bytes() == expected
    (packages / "recipe.toml").write_text(recipe_text.format(sha="b" * 64))
    with pytest.raises(SourceError, match="sha256 mismatch for `git archive`"):
        fetch_source(load_recipe(packages / "recipe.toml"), tmp_path / "cache2")


def test_pypi_sdist_url_goes_through_the_index_client(tmp_path: Path) -> None:
    """The sdist is found on the PEP 691 page through IndexClient (cached); a release newer than
    the cached page is found by reading the page again; a missing one names the page."""
    from fakeindex import FakeIndex

    from ot2wheels.pypi import IndexClient
    from ot2wheels.sources import pypi_sdist_url

    idx = FakeIndex()
    idx.sdist("Tiny_Pkg", "1.0")
    idx.wheel("tiny-pkg", "1.0")
    idx.start()
    try:
        client = IndexClient(tmp_path / "cache", index_url=idx.url)
        url, filename = pypi_sdist_url("tiny.pkg", "1.0", client)
        assert filename.endswith(".tar.gz") and url.startswith(idx.url.removesuffix("/simple"))
        pages = len(idx.requests)
        assert pypi_sdist_url("tiny-pkg", "1.0", client) == (url, filename)
        assert len(idx.requests) == pages  # the client's page cache answered
        idx.sdist("tiny-pkg", "1.1")  # released after the page was cached
        assert pypi_sdist_url("tiny-pkg", "1.1", client)[1].endswith("1.1.tar.gz")
        with pytest.raises(SourceError, match=r"/simple/tiny-pkg/: no sdist for tiny-pkg==9.9"):
            pypi_sdist_url("tiny-pkg", "9.9", client)
    finally:
        idx.stop()
