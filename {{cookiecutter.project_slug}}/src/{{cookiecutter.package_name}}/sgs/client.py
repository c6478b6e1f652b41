"""The client app: connect, send, request/reply matching, push callbacks.

Replies on one link come back in request order, so a FIFO of pending
requests, each waiting for its message's declared reply type (or an ``Error``
naming its id), matches every reply exactly; anything else is a push.

Resumption (``arm_resume``): the client counts the frames it receives (the
server's per-link outbound sequence; ``ResumeResp`` sets the count instead),
and when the connection drops without ``close()`` it reconnects with
exponential backoff and jitter, a bounded number of times, and sends
``ResumeReq(token, last_seq=count)``. The frames the server replays arrive
as pushes, in order, before anything new; ``on_resumed(fn)`` hears
``recovered`` (True: nothing was lost; False: the game sends a snapshot;
None: no session any more, log in again).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from .builtins import ERROR_ID, Error, PingReq, PongResp
from .connector import FrameDecoder
from .errors import ProtocolError, RemoteError
from .message import Catalog, Message, default_catalog
from .protocol import get_codec
from .resume.messages import ResumeReq, ResumeResp
from .settings import MAX_FRAME_CEILING

log = logging.getLogger("sgs.client")

M = TypeVar("M", bound=Message)
Callback = Callable[[Any], Any]


class _Pending:
    __slots__ = ("expected", "request_id", "future")

    def __init__(self, expected: int, request_id: int, future: asyncio.Future[Any]) -> None:
        self.expected = expected
        self.request_id = request_id
        self.future = future


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client._data(data)

    def pause_writing(self) -> None:
        self.client._writable.clear()

    def resume_writing(self) -> None:
        self.client._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(exc)


class Client:
    """An async TLV client for any server built on sgs (and for go-sgs servers)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6666,
        protocol: str = "json",
        catalog: Catalog | None = None,
        connect_timeout: float = 5.0,
        request_timeout: float = 10.0,
        max_frame_size: int = MAX_FRAME_CEILING,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.ssl = ssl  # a TLS port: see sgs.tls.client_context
        self.server_hostname = server_hostname
        self.port = port
        self.catalog = catalog if catalog is not None else default_catalog
        for builtin in (PingReq, PongResp, Error):
            self.catalog.add(builtin)
        self.codec = get_codec(protocol, self.catalog)
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.max_frame_size = max_frame_size
        self.last_error: Error | None = None  # an Error that answered no request
        self._callbacks: dict[type[Message], list[Callback]] = {}
        self._transport: asyncio.Transport | None = None
        self._pending: deque[_Pending] = deque()
        self._decoder = FrameDecoder(max_frame_size)
        self._closed = asyncio.Event()
        self._closed.set()
        self._writable = asyncio.Event()
        self._writable.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keepalive: asyncio.Task[None] | None = None
        #: Frames received since the count was last set (the server's outbound sequence).
        self.seq = 0
        self.resume_token = ""
        self.resume_retries = 0  # 0: a drop is not resumed
        self.resume_delay = (0.1, 2.0)  # first and largest backoff, seconds (jitter x0.5-1.5)
        self._closing = False
        self._resume_task: asyncio.Task[None] | None = None
        self._resumed: list[Callable[[bool | None], Any]] = []

    # -- connection ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._closed.is_set()

    async def connect(self, retries: int = 0, delay: float = 0.2) -> Client:
        """Connect, retrying ``retries`` times with doubling delay (the reconnect helper)."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                transport, _ = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _ClientProtocol(self),
                        self.host,
                        self.port,
                        ssl=self.ssl,
                        server_hostname=self.server_hostname if self.ssl else None,
                    ),
                    self.connect_timeout,
                )
                break
            except (TimeoutError, OSError):
                if attempt >= retries:
                    raise
                attempt += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._transport = transport  # type: ignore[assignment]
        self._closing = False
        self._decoder = FrameDecoder(self.max_frame_size)
        self._closed = asyncio.Event()
        self._writable.set()
        return self

    async def reconnect(self, retries: int = 5, delay: float = 0.2) -> Client:
        await self.close()
        return await self.connect(retries=retries, delay=delay)

    async def close(self) -> None:
        """Close and wait until the connection is gone; pending requests fail."""
        self._closing = True
        if self._resume_task is not None and self._resume_task is not asyncio.current_task():
            self._resume_task.cancel()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._transport is not None and not self._closed.is_set():
            self._transport.close()
            try:
                await asyncio.wait_for(self._closed.wait(), 2.0)
            except TimeoutError:
                self._transport.abort()
        for task in list(self._tasks):
            task.cancel()

    @property
    def closed(self) -> asyncio.Event:
        """Set once the connection is gone (or before the first connect)."""
        return self._closed

    async def wait_closed(self) -> None:
        """Returns when the server (or we) closed the connection."""
        await self._closed.wait()

    async def __aenter__(self) -> Client:
        if not self.connected:
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending ------------------------------------------------------------

    def on(self, msg_type: type[M], callback: Callable[[M], Any]) -> None:
        """Call ``callback(msg)`` for every pushed ``msg_type`` (sync or async)."""
        self._callbacks.setdefault(msg_type, []).append(callback)

    def send_nowait(self, msg: Message) -> None:
        if not self.connected:
            raise ConnectionError("not connected")
        self._transport.write(self.codec.encode_frame(msg))  # type: ignore[union-attr]

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests of bad input, other codecs' frames)."""
        if not self.connected:
            raise ConnectionError("not connected")
        self._transport.write(data)  # type: ignore[union-attr]

    async def send(self, msg: Message) -> None:
        """Send without waiting for an answer; waits while the socket is congested."""
        self.send_nowait(msg)
        if not self._writable.is_set():
            await self._writable.wait()

    async def request(
        self, msg: Message, timeout: float | None = None, reply: type[M] | None = None
    ) -> Any:
        """Send ``msg`` and return its reply; an ``Error`` reply raises :class:`RemoteError`."""
        reply_type = reply or type(msg).__reply__
        if reply_type is None:
            raise TypeError(
                f"{type(msg).__name__} declares no reply type; pass reply= or use send()"
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(reply_type.__msg_id__, msg.__msg_id__, future))  # type: ignore[arg-type]
        try:
            self.send_nowait(msg)
        except ConnectionError:
            self._pending.pop()
            raise
        return await asyncio.wait_for(
            future, timeout if timeout is not None else self.request_timeout
        )

    def keepalive(self, interval: float) -> None:
        """Ping every ``interval`` seconds so the server's idle timeout leaves us open."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        self._keepalive = asyncio.get_running_loop().create_task(self._ping_loop(interval))

    async def ping(self, timeout: float | None = None) -> float:
        """Round trip in seconds."""
        start = time.perf_counter()
        await self.request(PingReq(client_time_ms=int(time.time() * 1000)), timeout=timeout)
        return time.perf_counter() - start

    async def _ping_loop(self, interval: float) -> None:
        try:
            while self.connected:
                await asyncio.sleep(interval)
                await self.ping()
        except (TimeoutError, ConnectionError, RemoteError):
            return

    # -- resumption -----------------------------------------------------------

    def arm_resume(
        self, retries: int = 5, first_delay: float = 0.1, max_delay: float = 2.0
    ) -> None:
        """After a login: ask for a resume token (pipelined: no round trip waited for).

        From then on a drop is resumed automatically, ``retries`` connection
        attempts at most, the delay doubling from ``first_delay`` to ``max_delay``.
        """
        self.resume_retries = retries
        self.resume_delay = (first_delay, max_delay)
        self.send_nowait(ResumeReq())

    def forget_resume(self) -> None:
        """A logout: the next drop is the end of the session, not something to resume."""
        self.resume_token = ""
        self.resume_retries = 0

    def on_resumed(self, fn: Callable[[bool | None], Any]) -> None:
        """``fn(recovered)`` after each automatic resume (None: it failed; log in again)."""
        self._resumed.append(fn)

    async def resume(self) -> bool | None:
        """Reconnect (backoff with jitter, bounded) and resume; ``recovered``, or None."""
        delay, max_delay = self.resume_delay
        for attempt in range(max(1, self.resume_retries)):
            if attempt:
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, max_delay)
            self.last_error = None
            try:
                await self.connect()
                resp = await self.request(ResumeReq(token=self.resume_token, last_seq=self.seq))
            except RemoteError as exc:  # resume_expired, a refused token: no session left
                log.info("resume refused: %s", exc)
                self.forget_resume()
                return None
            except (OSError, TimeoutError, ConnectionError):
                continue
            return bool(resp.recovered)
        return None

    async def _auto_resume(self) -> None:
        recovered = await self.resume()
        for fn in self._resumed:
            try:
                result = fn(recovered)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_resumed callback raised")

    # -- receiving ----------------------------------------------------------

    def _data(self, data: bytes) -> None:
        frames = self._decoder.feed(data)
        for msg_id, payload in frames:
            try:
                msg = self.codec.decode(msg_id, payload)
            except ProtocolError as exc:
                log.warning("dropping frame from server: %s", exc)
                continue
            self._deliver(msg_id, msg)
        if self._decoder.error is not None:
            log.error("server broke the framing: %s", self._decoder.error)
            self._transport.abort()  # type: ignore[union-attr]

    def _deliver(self, msg_id: int, msg: Message) -> None:
        if msg.__class__ is ResumeResp:
            self.seq = msg.seq  # type: ignore[attr-defined]
            if msg.token:  # type: ignore[attr-defined]
                self.resume_token = msg.token  # type: ignore[attr-defined]
        else:
            self.seq += 1
        pending = self._pending
        while pending and pending[0].future.done():  # timed out or cancelled
            head = pending[0]
            if msg_id == head.expected or (msg_id == ERROR_ID and msg.msg_id == head.request_id):  # type: ignore[attr-defined]
                pending.popleft()  # the late reply of an abandoned request
                return
            pending.popleft()
        if pending:
            head = pending[0]
            if msg_id == head.expected:
                pending.popleft()
                head.future.set_result(msg)
                return
            if msg_id == ERROR_ID and msg.msg_id == head.request_id:  # type: ignore[attr-defined]
                pending.popleft()
                head.future.set_exception(RemoteError(msg))
                return
        if msg_id == ERROR_ID:
            self.last_error = msg  # type: ignore[assignment]
        callbacks = self._callbacks.get(type(msg))
        if not callbacks:
            if msg_id == ERROR_ID:
                log.warning("server error: %s", msg)
            return
        for callback in callbacks:
            try:
                result = callback(msg)
            except Exception:
                log.exception("push callback for %s raised", type(msg).__name__)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _lost(self, exc: Exception | None) -> None:
        self._closed.set()
        self._writable.set()
        reason = f"connection closed: {exc}" if exc else "connection closed by server"
        if self.last_error is not None and self.last_error.msg_id == 0:
            reason = f"connection closed: {self.last_error.code}: {self.last_error.message}"
        while self._pending:
            entry = self._pending.popleft()
            if not entry.future.done():
                entry.future.set_exception(ConnectionError(reason))
        replaced = self.last_error is not None and self.last_error.code == "replaced"
        if self.resume_token and self.resume_retries and not self._closing and not replaced:
            if self._resume_task is None or self._resume_task.done():
                self._resume_task = asyncio.get_running_loop().create_task(self._auto_resume())
