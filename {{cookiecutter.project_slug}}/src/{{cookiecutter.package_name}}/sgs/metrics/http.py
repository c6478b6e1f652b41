"""A small HTTP/1.1 GET server on the event loop, for probes and scrapes.

It runs on the server's own loop on purpose: an answer from ``/healthz``
proves that loop is turning. Every client is bounded (header size, read and
write time, number at once) and closed after one response, so junk, huge
headers or a slow client on this port cost a few bytes of memory and never
hold up the game port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("sgs.metrics")

HEADER_LIMIT = 8 * 1024
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_CLIENTS = 32

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[], Response]


class HttpEndpoint:
    """Serves ``routes`` (path -> function returning a :class:`Response`) to GET and HEAD."""

    def __init__(
        self,
        routes: dict[str, Route],
        *,
        header_limit: int = HEADER_LIMIT,
        read_timeout: float = READ_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.routes = routes
        self.header_limit = header_limit
        self.read_timeout = read_timeout
        self.max_clients = max_clients
        self.rejected = 0  # requests answered 4xx, or dropped over max_clients
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=self.header_limit, reuse_address=True
        )
        name = self._server.sockets[0].getsockname()
        return name[0], name[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._clients) >= self.max_clients or task is None:
            self.rejected += 1
            writer.transport.abort()
            return
        self._clients.add(task)
        try:
            response, head_only = await self._read_request(reader)
            writer.write(_encode(response, head_only))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client left or would not read: nothing more to do for it
        except Exception:
            log.exception("metrics endpoint: request failed")
        finally:
            self._clients.discard(task)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[Response, bool]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.read_timeout)
        except asyncio.LimitOverrunError:
            return self._reject(431, "request head too large"), False
        except TimeoutError:
            return self._reject(408, "request not received in time"), False
        line = head.split(b"\r\n", 1)[0]
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return self._reject(400, "not an HTTP/1.x request line"), False
        method, target = parts[0], parts[1]
        if method not in (b"GET", b"HEAD"):
            return self._reject(405, "only GET and HEAD"), False
        path = target.split(b"?", 1)[0].decode("ascii", "replace")
        route = self.routes.get(path)
        if route is None:
            return self._reject(404, f"no such path; try {', '.join(self.routes)}"), False
        return route(), method == b"HEAD"

    def _reject(self, status: int, why: str) -> Response:
        self.rejected += 1
        return Response(status, f"{why}\n".encode())


def _encode(response: Response, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + response.body
