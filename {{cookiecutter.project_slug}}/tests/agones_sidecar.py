"""A stand-in for the Agones SDK sidecar's REST gateway, for tests on 127.0.0.1.

The real sidecar (a Go binary next to the game server in the pod) cannot run
without a cluster; this speaks the subset of its documented REST API the
server uses, on a real socket, from threads of its own (so a blocked event
loop in the server under test cannot stall it):

    POST /ready /health /allocate /shutdown     body {}
    PUT  /metadata/label                        {"key": k, "value": v}
    PATCH /v1beta1/counters/<name>              {"count": "N"}  (404 if undeclared)
    GET  /gameserver                            the GameServer as JSON
    GET  /watch/gameserver                      chunked, one {"result": GameServer} a line

Every request is recorded with its arrival time (``time.monotonic()``, the
system-wide clock, so it compares with times taken in the test process).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LABEL_PREFIX = "agones.dev/sdk-"


@dataclass(frozen=True)
class Call:
    at: float
    method: str
    path: str
    body: Any


@dataclass
class GameServer:
    name: str = "standin-gs"
    state: str = "Scheduled"
    labels: dict[str, str] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"players": {"count": 0, "capacity": 1000}}
    )

    def as_json(self) -> dict[str, Any]:
        return {
            "object_meta": {"name": self.name, "namespace": "default", "labels": dict(self.labels)},
            "status": {
                "state": self.state,
                "address": "127.0.0.1",
                "ports": [{"name": "game", "port": 7000}],
                "counters": {k: dict(v) for k, v in self.counters.items()},
            },
        }


class StandInSidecar:
    """Start with ``start()`` (port 0: a free one), stop with ``stop()``; or use ``with``."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.calls: list[Call] = []
        self.gameserver = GameServer()
        #: When set, every request is answered with this status (a sick sidecar).
        self.fail_status: int | None = None
        #: path -> fn(), called in the handler thread when that path arrives (before the
        #: answer): the test looks at the server at that very moment.
        self.hooks: dict[str, Any] = {}
        #: path -> fn(), called once the answer is computed and before it is sent: what
        #: fn changes happens while that answer is in flight (it arrives stale).
        self.in_flight: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._watchers: list[queue.Queue[bytes | None]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------

    def start(self) -> StandInSidecar:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.drop_watchers()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> StandInSidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_state(self, state: str) -> None:
        """Change the GameServer as Agones would (an allocation, a scale-down)."""
        with self._lock:
            self.gameserver.state = state
            self._notify()

    def drop_watchers(self) -> None:
        """End every open watch stream (the sidecar restarting)."""
        with self._lock:
            for watcher in self._watchers:
                watcher.put(None)
            self._watchers.clear()

    # -- what arrived ---------------------------------------------------------

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [c.path for c in self.calls if method is None or c.method == method]

    def times(self, path: str) -> list[float]:
        with self._lock:
            return [c.at for c in self.calls if c.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 20.0) -> list[float]:
        """Poll until ``path`` arrived ``count`` times; its arrival times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            times = self.times(path)
            if len(times) >= count:
                return times
            time.sleep(0.02)
        raise AssertionError(
            f"{path} arrived {len(self.times(path))} times, not {count}: {self.paths()}"
        )

    # -- inside the handler threads -------------------------------------------

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.calls.append(Call(time.monotonic(), method, path, body))

    def _notify(self) -> None:
        line = json.dumps({"result": self.gameserver.as_json()}).encode() + b"\n"
        for watcher in self._watchers:
            watcher.put(line)

    def _apply(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        gs = self.gameserver
        if (method, path) == ("POST", "/health"):
            return 200, {}
        with self._lock:
            if (method, path) == ("POST", "/ready"):
                if gs.state not in ("Allocated", "Reserved"):
                    gs.state = "Ready"
            elif (method, path) == ("POST", "/allocate"):
                gs.state = "Allocated"
            elif (method, path) == ("POST", "/shutdown"):
                gs.state = "Shutdown"
            elif (method, path) == ("PUT", "/metadata/label"):
                gs.labels[LABEL_PREFIX + body["key"]] = body["value"]
            elif method == "PATCH" and path.startswith("/v1beta1/counters/"):
                name = path.rsplit("/", 1)[1]
                if name not in gs.counters:
                    return 404, {"code": 5, "message": f"counter not found: {name}"}
                gs.counters[name]["count"] = int(body["count"])
                return 200, {"name": name, **{k: str(v) for k, v in gs.counters[name].items()}}
            elif (method, path) == ("GET", "/gameserver"):
                return 200, gs.as_json()
            else:
                return 404, {"code": 5, "message": "Not Found"}
            self._notify()
        return 200, {}

    def _watch(self, handler: BaseHTTPRequestHandler) -> None:
        feed: queue.Queue[bytes | None] = queue.Queue()
        with self._lock:
            self._watchers.append(feed)
            first = json.dumps({"result": self.gameserver.as_json()}).encode() + b"\n"
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        line: bytes | None = first
        try:
            while line is not None and self._httpd is not None:
                half = len(line) // 2  # a line split over two chunks, as a stream may do
                for part in (line[:half], line[half:]):
                    handler.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                handler.wfile.flush()
                line = feed.get()
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the server under test went away
        handler.close_connection = True


def _handler(sidecar: StandInSidecar) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the test reads sidecar.calls

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            sidecar._record(self.command, self.path, body)
            if sidecar.fail_status is not None:
                self._answer(sidecar.fail_status, {"code": 14, "message": "unavailable"})
                return
            hook = sidecar.hooks.get(self.path)
            if hook is not None:
                hook()
            if self.command == "GET" and self.path == "/watch/gameserver":
                sidecar._watch(self)
                return
            answer = sidecar._apply(self.command, self.path, body)
            late = sidecar.in_flight.pop(self.path, None)
            if late is not None:
                late()
            self._answer(*answer)

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _serve

    return Handler
