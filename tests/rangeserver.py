"""A real HTTP server on 127.0.0.1 for tests: serves files from a directory, honours
`Range: bytes=N-`, and can cut a connection mid-body once per file (to test resume)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class ServerState:
    root: Path
    cut_once: dict[str, int] = field(default_factory=dict)  # url path -> bytes sent before cutting
    cut_every: dict[str, int] = field(default_factory=dict)  # like cut_once, on every request
    status_once: dict[str, int] = field(default_factory=dict)  # url path -> error status sent once
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: RangeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        st = self.server.state
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        with st.lock:
            st.requests.append((path, rng))
            status = st.status_once.pop(path, None)
            cut = st.cut_once.pop(path, None)
            if cut is None:
                cut = st.cut_every.get(path)
        if status is not None:
            self.send_error(status)
            return
        file = (st.root / path.lstrip("/")).resolve()
        if not file.is_file() or st.root.resolve() not in file.parents:
            self.send_error(404)
            return
        data = file.read_bytes()
        start, end = 0, len(data) - 1
        m = _RANGE.match(rng or "")
        if m and not st.ignore_range:
            start = int(m.group(1))
            if m.group(2):
                end = min(int(m.group(2)), end)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start : end + 1]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class RangeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


@contextmanager
def serve(root: Path) -> Iterator[RangeServer]:
    srv = RangeServer(ServerState(root=root))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
