from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakeindex import FakeIndex, make_wheel

from ot2wheels.errors import DownloadError
from ot2wheels.pypi import IndexClient, configured_index_url


def test_index_url_from_env_wins() -> None:
    assert configured_index_url({**os.environ, "PIP_INDEX_URL": "http://127.0.0.1:9/simple/"}) == \
        "http://127.0.0.1:9/simple"


def test_index_url_from_pip_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://127.0.0.1:9/mirror/simple\n")
    env = {k: v for k, v in os.environ.items() if k != "PIP_INDEX_URL"}
    env["PIP_CONFIG_FILE"] = str(conf)
    assert configured_index_url(env) == "http://127.0.0.1:9/mirror/simple"


def test_index_url_defaults_to_pips_own() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIP_INDEX_URL"}
    env["PIP_CONFIG_FILE"] = os.devnull
    pips = subprocess.run([sys.executable, "-c", "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert configured_index_url(env) == pips.rstrip("/")


def test_wheel_metadata_read_by_range_not_whole_file(tmp_path: Path) -> None:
    idx = FakeIndex()
    fn, data = make_wheel("big", "1.0", requires=["dep>=2"])
    # pad the wheel so that reading it whole would take many 64 KiB blocks
    import io
    import zipfile
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_STORED) as zf:
        zf.writestr("big/blob.bin", os.urandom(1_000_000))
    idx.add("big", fn, buf.getvalue())
    idx.start()
    try:
        c = IndexClient(tmp_path, index_url=idx.url)
        [f] = c.files("big")
        assert f.url.startswith("http://127.0.0.1:") and "/files/" in f.url  # relative URL resolved
        meta = c.metadata(f)
        assert meta.requires_dist == ("dep>=2",) and (meta.name, meta.version) == ("big", "1.0")
        assert c.requests <= 4  # page + a couple of 64 KiB ranges, not 16 blocks
        with pytest.raises(DownloadError, match="not on the index"):
            c.files("missing")
    finally:
        idx.stop()
