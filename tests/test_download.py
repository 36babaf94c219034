"""download(): against a real HTTP server on 127.0.0.1 with Range support."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
from rangeserver import serve

from ot2wheels.download import download, sha256_file, verify_file
from ot2wheels.errors import DownloadError

FAST = {"progress": False, "retries": 3, "backoff": 0.01, "timeout": 10}


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes, str]:
    root = tmp_path / "srv"
    root.mkdir()
    data = os.urandom(700_000)
    (root / "blob.tar.gz").write_bytes(data)
    return root, data, hashlib.sha256(data).hexdigest()


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if not p.name.endswith(".lock"))


def test_clean_download_then_cached_without_network(payload, tmp_path):
    root, data, sha = payload
    dest = tmp_path / "out" / "blob.tar.gz"
    with serve(root) as srv:
        got = download(srv.url("blob.tar.gz"), dest, sha, size=len(data), **FAST)
        assert got == dest and dest.read_bytes() == data
        assert srv.state.requests == [("/blob.tar.gz", None)]
    assert _leftovers(dest.parent) == ["blob.tar.gz"]
    # server is gone: a verified file is reused, no request made
    assert download("http://127.0.0.1:9/blob.tar.gz", dest, sha, **FAST) == dest


def test_resume_after_cut_connection(payload, tmp_path):
    root, data, sha = payload
    dest = tmp_path / "blob.tar.gz"
    with serve(root) as srv:
        srv.state.cut_once["/blob.tar.gz"] = 250_000
        download(srv.url("blob.tar.gz"), dest, sha, size=len(data), **FAST)
        reqs = srv.state.requests
    assert dest.read_bytes() == data
    assert reqs[0] == ("/blob.tar.gz", None)
    # the second request resumed where the cut left off (some bytes may sit in socket buffers)
    assert len(reqs) == 2 and reqs[1][1] is not None
    resumed_at = int(reqs[1][1].removeprefix("bytes=").rstrip("-"))
    assert resumed_at == 250_000


def test_server_ignoring_range_restarts_cleanly(payload, tmp_path):
    root, data, sha = payload
    dest = tmp_path / "blob.tar.gz"
    with serve(root) as srv:
        srv.state.ignore_range = True
        srv.state.cut_once["/blob.tar.gz"] = 100_000
        download(srv.url("blob.tar.gz"), dest, sha, **FAST)
    assert dest.read_bytes() == data


def test_truncated_every_time_keeps_part_and_rerun_resumes(payload, tmp_path):
    root, data, sha = payload
    dest = tmp_path / "blob.tar.gz"
    with serve(root) as srv:
        srv.state.cut_every["/blob.tar.gz"] = 100_000
        with pytest.raises(DownloadError, match=r"connection closed after .* run the same command again"):
            download(srv.url("blob.tar.gz"), dest, sha, size=len(data), **{**FAST, "retries": 2})
        assert not dest.exists()
        part = dest.with_name("blob.tar.gz.part")
        assert part.stat().st_size == 300_000
        srv.state.cut_every.clear()
        download(srv.url("blob.tar.gz"), dest, sha, size=len(data), **FAST)
        assert srv.state.requests[-1][1] == "bytes=300000-"
    assert dest.read_bytes() == data and not part.exists()


def test_wrong_hash_leaves_nothing(payload, tmp_path):
    root, _data, _ = payload
    dest = tmp_path / "blob.tar.gz"
    with serve(root) as srv:
        with pytest.raises(DownloadError, match="sha256 mismatch") as exc:
            download(srv.url("blob.tar.gz"), dest, "0" * 64, **FAST)
    assert "pin its sha256" in str(exc.value)
    assert _leftovers(tmp_path) == ["srv"]


def test_wrong_size_refused_before_download_completes(payload, tmp_path):
    root, _data, sha = payload
    dest = tmp_path / "blob.tar.gz"
    with serve(root) as srv:
        with pytest.raises(DownloadError, match="server's file is 700000 bytes but the pin says 5"):
            download(srv.url("blob.tar.gz"), dest, sha, size=5, **FAST)
    assert _leftovers(tmp_path) == ["srv"]


def test_unreachable_url(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DownloadError, match=r"failed after 2 attempts .*check the URL and your network"):
        download(f"http://127.0.0.1:{port}/x.tar.gz", tmp_path / "x.tar.gz", "a" * 64,
                 **{**FAST, "retries": 1})
    assert _leftovers(tmp_path) == []


def test_404_is_final_and_transient_503_is_retried(payload, tmp_path):
    root, _data, sha = payload
    with serve(root) as srv:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(srv.url("missing.tar.gz"), tmp_path / "m.tar.gz", sha, **FAST)
        assert len(srv.state.requests) == 1
        srv.state.status_once["/blob.tar.gz"] = 503
        download(srv.url("blob.tar.gz"), tmp_path / "b.tar.gz", sha, **FAST)
        assert [r[0] for r in srv.state.requests[1:]] == ["/blob.tar.gz", "/blob.tar.gz"]


def test_disk_full_is_reported_and_cleaned_up(payload, tmp_path):
    """Writes go to /dev/full, which fails every write with a real ENOSPC from the kernel."""
    root, _data, sha = payload
    dest = tmp_path / "blob.tar.gz"
    dest.with_name("blob.tar.gz.part").symlink_to("/dev/full")
    with serve(root) as srv:
        with pytest.raises(DownloadError, match=r"disk full while writing .*Free some space"):
            download(srv.url("blob.tar.gz"), dest, sha, **FAST)
    assert _leftovers(tmp_path) == ["srv"]


def test_bad_pin_is_refused_before_any_request(payload, tmp_path):
    root, *_ = payload
    with serve(root) as srv:
        with pytest.raises(DownloadError, match="not a sha256"):
            download(srv.url("blob.tar.gz"), tmp_path / "b", "TO-BE-FILLED", **FAST)
        assert srv.state.requests == []


def test_verify_file_reports_truncation(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    verify_file(f, sha256_file(f), 3)
    with pytest.raises(DownloadError, match="truncated: 3 bytes, the pin says 10"):
        verify_file(f, sha256_file(f), 10)


def test_unpinned_download_refetches_and_leaves_hashing_to_the_caller(payload, tmp_path):
    """sha256=None (trust on first use): a file already at dest has unknown origin, so it is
    fetched again; a cut connection still resumes; the result is the server's bytes."""
    root, _data, sha = payload
    dest = tmp_path / "blob.tar.gz"
    dest.write_bytes(b"something else")
    with serve(root) as srv:
        srv.state.cut_once["/blob.tar.gz"] = 300_000
        got = download(srv.url("blob.tar.gz"), dest, None, **FAST)
        ranges = [r for _, r in srv.state.requests]
    assert got == dest and sha256_file(dest) == sha
    assert ranges == [None, "bytes=300000-"]
    assert _leftovers(tmp_path) == ["blob.tar.gz", "srv"]
