"""Serve an index directory over HTTP with the content types pip and uv expect.

A directory holding both `index.html` and `index.json` (the simple API pages) is answered by
content negotiation (PEP 691): the JSON page for `application/vnd.pypi.simple.v1+json`, the
HTML page otherwise; `?format=<content type>` overrides the Accept header.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .render import HTML_CONTENT_TYPE, JSON_CONTENT_TYPE

_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_CONTENT_TYPE,
    "application/vnd.pypi.simple.latest+html": HTML_CONTENT_TYPE,
}
# Server preference when the client rates several equally.
_OFFERED = (JSON_CONTENT_TYPE, HTML_CONTENT_TYPE, "text/html")


def negotiate(accept: str | None) -> str | None:
    """The content type to answer with for an Accept header; None if nothing offered is acceptable."""
    if not accept or not accept.strip():
        return "text/html"
    best: tuple[float, int, str] | None = None
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        mtype = _ALIASES.get(fields[0].lower(), fields[0].lower())
        q = 1.0
        for param in fields[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        if mtype in ("*/*", "text/*"):
            choice = "text/html"
        elif mtype == "application/*":
            choice = JSON_CONTENT_TYPE
        elif mtype in _OFFERED:
            choice = mtype
        else:
            continue
        rank = (q, -_OFFERED.index(choice), choice)
        if best is None or rank > best:
            best = rank
    return best[2] if best else None


def query_format(query: str) -> str | None:
    """The `format` parameter of a query string, percent-decoded but with `+` kept as `+`.

    Form decoding (parse_qs) turns `+` into a space, which would make the documented
    `?format=application/vnd.pypi.simple.v1+json` unknown; a media type never holds a space.
    """
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if sep and unquote(key) == "format":
            return unquote(value)
    return None


class IndexRequestHandler(SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - the base class declares it this way
        **SimpleHTTPRequestHandler.extensions_map,
        ".whl": "application/octet-stream",
        ".metadata": "application/octet-stream",
        ".txt": "text/plain; charset=utf-8",
        ".html": "text/html; charset=utf-8",
        ".json": JSON_CONTENT_TYPE,  # the only .json files in an index are PEP 691 pages
    }
    quiet = True
    on_request: Callable[[str, str], None] | None = None  # (path, Content-Type sent), for tests

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-type" and self.on_request is not None:
            self.on_request(self.path, value)
        super().send_header(keyword, value)

    def log_message(self, format: str, *args: object) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    def send_head(self):
        parts = urlsplit(self.path)
        local = Path(self.translate_path(self.path))
        if parts.path.endswith("/") and (local / "index.json").is_file() and (local / "index.html").is_file():
            wanted = query_format(parts.query)
            ctype = negotiate(wanted or self.headers.get("Accept"))
            if ctype is None:
                self.send_error(HTTPStatus.NOT_ACCEPTABLE,
                                f"offered: {', '.join(_OFFERED)}")
                return None
            page = local / ("index.json" if ctype == JSON_CONTENT_TYPE else "index.html")
            body = open(page, "rb")  # noqa: SIM115 - closed by the base class after copying
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype if ctype != "text/html" else "text/html; charset=utf-8")
            # fstat, not stat: a swap between open and stat must not mix two files' sizes.
            self.send_header("Content-Length", str(os.fstat(body.fileno()).st_size))
            self.send_header("Vary", "Accept")
            self.end_headers()
            return body
        return super().send_head()


def make_server(path: Path, host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                on_request: Callable[[str, str], None] | None = None) -> ThreadingHTTPServer:
    handler = type("Handler", (IndexRequestHandler,),
                   {"quiet": quiet, "on_request": staticmethod(on_request) if on_request else None})
    return ThreadingHTTPServer((host, port), partial(handler, directory=str(Path(path).absolute())))


@contextmanager
def serve_index(path: Path, host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                on_request: Callable[[str, str], None] | None = None) -> Iterator[str]:
    """Serve `path` in a background thread; yields its base URL like http://127.0.0.1:PORT.

    `on_request(path, content_type)` is called for every response (from the server's threads).
    Binding 127.0.0.1 makes the index reachable from programs run under qemu-arm user mode too.
    """
    server = make_server(path, host, port, quiet, on_request)
    thread = threading.Thread(target=server.serve_forever, name="ot2wheels-index", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
