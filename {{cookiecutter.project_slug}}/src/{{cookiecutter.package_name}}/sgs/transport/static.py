"""Plain HTTP GETs on the WebSocket port: the demo page, the JS client and its catalogue.

A browser needs the page from somewhere; serving it from the port it then
talks to means ``make run`` plus one URL works on a fresh machine, with no
second server and no cross-origin setup. Only files under ``ws_static_dir``
are served (no ``..``, no hidden files, no directory listings), read on each
request (they are small and this is a development convenience, not a CDN).
``/catalog.js`` is generated from the running server's message catalogue, so
the page always speaks the server's messages and protocol.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

from picows import WSUpgradeResponse, WSUpgradeResponseWithListener

from .catalog_js import render_js_catalog

if TYPE_CHECKING:
    from ..framework import Server

#: Largest file served; the demo's own files are a few kilobytes.
MAX_FILE = 8 * 1024 * 1024

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".cjs": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".proto": "text/plain; charset=utf-8",
    ".map": "application/json",
}


class StaticFiles:
    """Files under one directory, answered to GET requests on the WebSocket port."""

    def __init__(self, root: str, server: Server) -> None:
        self.root = Path(root).resolve()
        self.server = server
        self._catalog: bytes | None = None

    def catalog(self) -> bytes:
        if self._catalog is None:
            s = self.server.settings
            self._catalog = render_js_catalog(
                self.server.catalog, protocol=s.protocol, ws_path=s.ws_path
            ).encode()
        return self._catalog

    def respond(self, path: str) -> WSUpgradeResponseWithListener:
        if path == "/catalog.js":
            return _ok(self.catalog(), _TYPES[".js"])
        rel = path.lstrip("/") or "index.html"
        parts = rel.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return _status(404, b"not found\n")
        target = (self.root / rel).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(self.root) or not target.is_file():
            return _status(404, b"not found\n")
        if target.stat().st_size > MAX_FILE:
            return _status(404, b"not found\n")
        kind = _TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0]
        return _ok(target.read_bytes(), kind or "application/octet-stream")


def _ok(body: bytes, content_type: str) -> WSUpgradeResponseWithListener:
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_ok_response(body, headers), None)


def _status(status: int, body: bytes) -> WSUpgradeResponseWithListener:
    response = WSUpgradeResponse.create_error_response(
        status, body, {"Content-Type": "text/plain; charset=utf-8"}
    )
    return WSUpgradeResponseWithListener(response, None)
