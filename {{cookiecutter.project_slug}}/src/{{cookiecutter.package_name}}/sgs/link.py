"""One connection: its recv side (moving what its reader parsed to its worker) and its
send side (a bounded queue).

Parsing and the inbound budget are the I/O-free :class:`~.reader.InboundReader`;
refusals, errors, throttles and closes with a reason are :mod:`.outcomes`.

The link is the asyncio protocol object itself, so an idle connection costs
one Python object beside the transport. How frames travel from here to a
logic worker, and who flushes the send queue, is the dispatcher's business
(the resource model); the link only knows its worker and its writer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, Any

from .context import Context
from .message import Message
from .outcomes import CloseReason, Reason, as_reason, reason_label
from .reader import InboundReader

if TYPE_CHECKING:
    from .dispatcher import LogicWorker, SendWorker
    from .framework import Server
    from .limits import TokenBucket
    from .resume.service import Session

log = logging.getLogger("sgs.link")


class LinkState(enum.IntEnum):
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


#: Bytes a reader task may have waiting before the link stops reading.
READ_BACKLOG = 64 * 1024

_OPEN = LinkState.OPEN
_CLOSING = LinkState.CLOSING
_CLOSED = LinkState.CLOSED


class Link(asyncio.Protocol):
    #: The ``transport`` label of the links-open metric; other transports override it.
    transport_name = "tcp"

    __slots__ = (
        "id",
        "server",
        "transport",
        "peer",
        "state",
        "close_reason",
        "reader",
        "worker",
        "writer",
        "out",
        "out_bytes",
        "scheduled",
        "write_paused",
        "read_paused",
        "reading_stopped",
        "inbound",
        "seen",
        "last_seen",
        "pending_close",
        "interrupted",
        "finalized",
        "dropped",
        "send_limit",
        "rbuf",
        "rbuf_bytes",
        "rwaiter",
        "eof",
        "hold",
        "buckets",
        "throttled",
        "limit_logged",
        "protocol_errors",
        "partial_since",
        "address",
        "session",
        "resume",
        "untracked",
        "_groups",
        "_ctx",
    )

    def __init__(self, server: Server) -> None:
        self.server = server
        self.id = 0
        self.transport: Any = None
        self.peer: Any = None
        self.state = LinkState.CONNECTING
        self.close_reason: Reason | None = None
        #: Bytes in; frames, refused ids, a pause, a broken stream out (no I/O).
        self.reader = InboundReader(server.settings.max_frame_size)
        self.worker: LogicWorker | None = None
        self.writer: SendWorker | None = None
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.scheduled = False
        self.write_paused = False
        self.read_paused = False
        self.reading_stopped = False
        self.inbound = 0
        self.seen = False
        self.last_seen = 0.0
        self.pending_close: Reason | None = None
        self.interrupted = False
        self.finalized = False
        self.dropped = 0
        self.send_limit = server.settings.send_buffer_size
        self.rbuf: list[bytes] | None = None  # set by models with a reader task
        self.rbuf_bytes = 0
        self.rwaiter: asyncio.Future[None] | None = None
        self.eof = False
        self.hold = 0  # store_sync = "always": passes whose replies wait for a commit
        self.buckets: dict[type, TokenBucket] | None = None  # per-message-type limits
        self.throttled = False  # reading paused until the inbound budget refills
        self.limit_logged = False  # a limit that bites is logged once per link
        self.protocol_errors = 0  # the first is logged at WARNING, the rest at DEBUG
        self.partial_since = 0.0  # when the sweeper first saw a frame half-arrived
        self.address = ""  # the peer's IP, counted by max_connections_per_ip
        #: Per-link data for handlers (login state, user objects, ...). A plain
        #: attribute, not a lazy property: handlers read it on most requests.
        self.session: dict[str, Any] = {}
        #: The resumable session this link is the identity or the carrier of (sgs/resume).
        self.resume: Session | None = None
        self.untracked = False  # the send queue holds a frame outside the sequence
        self._groups: set[str] | None = None
        self._ctx: Context | None = None

    def __repr__(self) -> str:
        return f"<Link {self.id} {self.peer} {self.state.name}>"

    # -- what handlers use -------------------------------------------------

    @property
    def groups(self) -> set[str]:
        if self._groups is None:
            self._groups = set()
        return self._groups

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            self._ctx = Context(self, self.server)
        return self._ctx

    @property
    def is_open(self) -> bool:
        return self.state is _OPEN

    @property
    def is_closed(self) -> bool:
        return self.state >= _CLOSING

    def send(self, msg: Message) -> bool:
        """Queue ``msg``; False when the link is closing or the message was dropped."""
        if self.state >= _CLOSED and self.resume is None:
            return False
        return self.write_frame(self.server.codec.encode_frame(msg))

    def write_frame(self, frame: bytes) -> bool:
        """Queue one encoded frame on the send side, enforcing its byte bound.

        A resumable link numbers the frame first; a held one only keeps it, and
        a resumed identity hands it to the connection carrying it now.
        """
        res = self.resume
        if res is not None and res.live is not self:
            live = res.live
            if live is None:  # held: kept for the resume only
                res.ring.record(frame)
                return True
            return live.write_frame(frame)  # a resumed identity: its carrier sends
        if self.state is _CLOSED or self.writer is None:
            if res is not None:  # dropped, not held yet: what it misses is kept
                res.ring.record(frame)
                return True
            return False
        size = len(frame)
        queued = self.out_bytes
        if (queued or self.write_paused) and queued + size > self.send_limit:
            return self._overflow(size)
        self.out.append(frame)
        self.out_bytes = queued + size
        if not self.scheduled:
            self.scheduled = True
            self.writer.schedule(self)
        return True

    def write_untracked(self, frame: bytes) -> bool:
        """Queue ``frame`` outside the outbound sequence (ResumeResp, a replayed frame)."""
        res, self.resume = self.resume, None
        try:
            if res is None:
                return self.write_frame(frame)
            self.untracked = True
            return self.write_frame(_Untracked(frame))
        finally:
            self.resume = res

    def _number_out(self) -> None:
        """Number and keep the queued frames (not yet written); the slow path of flush."""
        res = self.resume
        if res is None or res.live is not self or not self.out:
            return
        tracked = [f for f in self.out if f.__class__ is not _Untracked]
        self.untracked = False
        if tracked:
            res.ring.add(b"".join(tracked), len(tracked))

    def close(self, reason: Reason | str = CloseReason.LOCAL) -> None:
        """Idempotent. Queued frames are flushed first, except after a send overflow.

        ``reason`` is a :class:`CloseReason` or a reason the game registered
        with :func:`~.outcomes.close_reason`; another string raises ValueError.
        """
        reason = as_reason(reason)
        res = self.resume
        if res is not None and res.live is not None and res.live is not self:
            res.live.close(reason)  # a resumed identity: its carrier is the connection
            return
        if self.state >= _CLOSING:
            return
        if self.state is LinkState.CONNECTING:
            self.state = _CLOSED
            return
        self.state = _CLOSING
        self.close_reason = reason
        self.stop_reading()
        if reason is CloseReason.SEND_OVERFLOW:
            self._number_out()  # a resumable link gets them on its resume
            self.out.clear()
            self.out_bytes = 0
            self.transport.abort()
        else:
            if not self.out and not self.scheduled:
                self.transport.close()
            elif not self.scheduled:
                self.scheduled = True
                self.writer.schedule(self)  # type: ignore[union-attr]
            # A peer that never reads would keep a graceful close pending forever.
            asyncio.get_running_loop().call_later(
                max(self.server.settings.drain_timeout, 0.1), self.abort
            )
        log.debug("link %d closing: %s", self.id, reason_label(reason), extra={"link_id": self.id})

    def close_after_handler(self, reason: Reason | str) -> None:
        """Close once the running handler returned, so its reply goes out first."""
        res = self.resume
        if res is not None and res.live is not None and res.live is not self:
            res.live.close_after_handler(reason)
            return
        if self.pending_close is None:
            self.pending_close = as_reason(reason)

    def abort(self) -> None:
        """Drop the connection now, unsent data included (shutdown past its drain timeout)."""
        if self.transport is not None and self.state is not _CLOSED:
            self.transport.abort()

    # -- send side --------------------------------------------------------

    def _overflow(self, size: int) -> bool:
        return self.server.outcomes.send_full(self)

    def flush(self) -> None:
        """Write everything queued in one call; run by the link's writer."""
        self.scheduled = False
        state = self.state
        if state is _CLOSED or self.write_paused or self.hold:
            return
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            stats = self.server.stats
            stats.frames_out += len(out)
            stats.bytes_out += len(data)
            res = self.resume
            if res is not None:  # armed for resumption: number what leaves now
                if self.untracked:
                    self._number_out()
                elif res.live is self:
                    res.ring.add(data, len(out))
            out.clear()
            self.out_bytes = 0
            self.transport.write(data)
        if state is _CLOSING:
            self.transport.close()

    def release_hold(self) -> None:
        """One pass's commit is durable; the replies go once no pass still waits."""
        self.hold -= 1
        if not self.hold:
            self._reschedule()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._reschedule()

    def _reschedule(self) -> None:
        """Hand the link back to its writer if something waits to go out (or to close)."""
        if (self.out or self.state is _CLOSING) and not self.scheduled and self.writer:
            self.scheduled = True
            self.writer.schedule(self)

    # -- recv side --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.server.accept(self)

    def data_received(self, data: bytes) -> None:
        self.server.stats.bytes_in += len(data)
        if self.rbuf is None:
            self.ingest(data)
        else:
            self.rbuf.append(data)
            self.rbuf_bytes += len(data)
            # One readiness event may deliver many reads before the reader task
            # runs; past a bound, stop reading until it has parsed them.
            if self.rbuf_bytes > READ_BACKLOG and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
            waiter = self.rwaiter
            if waiter is not None:
                self.rwaiter = None
                if not waiter.done():
                    waiter.set_result(None)

    def ingest(self, data: bytes) -> None:
        """Hand what the reader made of ``data`` to the link's logic worker, in stream order."""
        if self.reading_stopped:
            return
        frames, refused, pause, broken = self.reader.feed(data)
        if pause:  # over a budget: stop reading first (the outcome service counts it)
            self.server.outcomes.throttle(self, pause, "messages" if refused else "bytes")
        worker: LogicWorker = self.worker  # type: ignore[assignment]
        if frames:
            self.seen = True
            self.inbound += len(frames)
            worker.post_frames(self, frames)
            if self.inbound > self.server.settings.inbound_limit and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()
        if refused:  # behind the accepted frames: the answers keep the order
            self.seen = True
            worker.post_refused(self, refused)
        if broken is not None:
            self.stop_reading()
            worker.post_broken(self)

    def inbound_done(self, n: int) -> None:
        """The worker handled ``n`` frames: resume reading below half the bound."""
        self.inbound -= n
        if self.read_paused:
            self._maybe_resume()

    def _maybe_resume(self) -> None:
        if (
            self.inbound <= self.server.settings.inbound_limit // 2
            and self.rbuf_bytes <= READ_BACKLOG
        ):
            self.read_paused = False
            if not self.reading_stopped and not self.throttled and self.state is _OPEN:
                self.transport.resume_reading()

    def pause_for(self, pause: float) -> None:
        """Stop reading for ``pause`` seconds (TCP back-pressure); the outcome service decides."""
        self.throttled = True
        self.transport.pause_reading()
        asyncio.get_running_loop().call_later(pause, self._unthrottle)

    def _unthrottle(self) -> None:
        """The budget refilled: hand on the deferred frames, then read again."""
        self.throttled = False
        if self.state is not _OPEN:
            return
        frames, refused, pause = self.reader.release()
        worker: LogicWorker = self.worker  # type: ignore[assignment]
        if frames:
            self.seen = True
            self.inbound += len(frames)
            worker.post_frames(self, frames)
        if refused:
            self.seen = True
            worker.post_refused(self, refused)
        if pause:
            self.server.outcomes.throttle(self, pause, "messages")
            return
        if not self.read_paused and not self.reading_stopped:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        # Keep the transport: replies to what was already received still go out.
        self._end_of_input()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.state
        res = self.resume
        # A resumed identity stays open on its carrier when its old connection ends.
        if res is None or res.live is None or res.live is self:
            self.state = _CLOSED
        if self.close_reason is None:
            self.close_reason = CloseReason.REMOTE
        self._number_out()  # never written: a resume replays them
        self.out.clear()
        self.out_bytes = 0
        if self.worker is None:  # refused before it was attached
            return
        if exc is not None and was is _OPEN:
            log.debug("link %d lost: %s", self.id, exc, extra={"link_id": self.id})
        self._end_of_input()
        self.server.link_lost(self)

    def _end_of_input(self) -> None:
        if self.rbuf is not None:  # the reader task posts the interrupt after its data
            self.eof = True
            waiter = self.rwaiter
            if waiter is not None:
                self.rwaiter = None
                if not waiter.done():
                    waiter.set_result(None)
        else:
            self.interrupt()

    def interrupt(self) -> None:
        """Tell the worker the read side ended (once); it drops the link's state."""
        if not self.interrupted and self.worker is not None:
            self.interrupted = True
            if self.reader.pending:
                log.info(
                    "link %d: connection ended inside a frame (%d bytes dropped)",
                    self.id,
                    self.reader.pending,
                    extra={"link_id": self.id},
                )
            self.worker.post_recv_interrupt(self)

    async def read_loop(self) -> None:
        """The per-link reader task of models 1-3."""
        rbuf = self.rbuf
        assert rbuf is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                if rbuf:
                    data = rbuf[0] if len(rbuf) == 1 else b"".join(rbuf)
                    rbuf.clear()
                    self.rbuf_bytes = 0
                    self.ingest(data)
                    if self.read_paused:
                        self._maybe_resume()
                elif self.eof:
                    break
                else:
                    self.rwaiter = loop.create_future()
                    await self.rwaiter
        finally:
            self.interrupt()

    def stop_reading(self) -> None:
        """Take no more input (closing, broken stream, graceful stop); what was read is handled."""
        if not self.reading_stopped:
            self.reading_stopped = True
            if self.transport is not None and self.state is not _CLOSED:
                try:
                    self.transport.pause_reading()
                except (RuntimeError, AttributeError):
                    pass  # transport already closing


class _Untracked(bytes):
    """A queued frame that is not numbered (ResumeResp, a replayed frame)."""
