"""A tiny PEP 691 index served on 127.0.0.1 for tests: real HTTP, real zip/tar files, Range support.

File URLs on the JSON pages are relative (`../../files/NAME`), as some indexes send them.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from packaging.utils import canonicalize_name


def make_wheel(name: str, version: str, tag: str = "py3-none-any", requires: list[str] = (),
               requires_python: str | None = None) -> tuple[str, bytes]:
    dist = f"{name.replace('-', '_')}-{version}"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    meta += [f"Requires-Dist: {r}" for r in requires]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name.replace('-', '_')}/__init__.py", "x = 1\n" * 2000)  # some bulk before METADATA
        zf.writestr(f"{dist}.dist-info/METADATA", "\n".join(meta) + "\n")
        zf.writestr(f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return f"{dist}-{tag}.whl", buf.getvalue()


def make_sdist(name: str, version: str, files: dict[str, str] | None = None,
               requires: list[str] = ()) -> tuple[str, bytes]:
    base = f"{name.replace('-', '_')}-{version}"
    pkg_info = ["Metadata-Version: 2.2", f"Name: {name}", f"Version: {version}"]
    pkg_info += [f"Requires-Dist: {r}" for r in requires]
    members = {"PKG-INFO": "\n".join(pkg_info) + "\n", **(files or {})}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for rel, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{base}/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return f"{base}.tar.gz", buf.getvalue()


@dataclass
class FakeIndex:
    files: dict[str, bytes] = field(default_factory=dict)
    projects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def add(self, project: str, filename: str, data: bytes, upload_time: str = "2025-01-01T00:00:00Z",
            requires_python: str | None = None, yanked: bool = False) -> None:
        self.files[filename] = data
        self.projects.setdefault(canonicalize_name(project), []).append({
            "filename": filename, "url": f"../../files/{filename}",
            "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "requires-python": requires_python, "size": len(data), "upload-time": upload_time,
            "yanked": yanked,
        })

    def wheel(self, name: str, version: str, tag: str = "py3-none-any", requires: list[str] = (),
              **kw: Any) -> None:
        fn, data = make_wheel(name, version, tag, requires)
        self.add(name, fn, data, **kw)

    def sdist(self, name: str, version: str, files: dict[str, str] | None = None,
              requires: list[str] = (), **kw: Any) -> None:
        fn, data = make_sdist(name, version, files, requires)
        self.add(name, fn, data, **kw)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def start(self) -> FakeIndex:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                index.requests.append(self.path)
                parts = [p for p in self.path.split("/") if p]
                if len(parts) == 2 and parts[0] == "simple" and parts[1] in index.projects:
                    body = json.dumps({"meta": {"api-version": "1.1"}, "name": parts[1],
                                       "files": index.projects[parts[1]]}).encode()
                    return self._send(200, body, "application/vnd.pypi.simple.v1+json")
                if len(parts) == 2 and parts[0] == "files" and parts[1] in index.files:
                    data = index.files[parts[1]]
                    rng = self.headers.get("Range")
                    if rng and rng.startswith("bytes="):
                        start_s, end_s = rng[6:].split("-")
                        start, end = int(start_s), min(int(end_s), len(data) - 1)
                        return self._send(206, data[start:end + 1], "application/octet-stream",
                                          {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
                    return self._send(200, data, "application/octet-stream")
                self._send(404, b"not found", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
