"""The load generator process: raw TLV over uvloop, every reply verified.

Run as ``python -m benchmarks.loadgen JOBFILE`` by the orchestrator, which
talks to it over stdio: this process prints JSON events (``ready``,
``pinged``, ``result``) one per line and waits for a ``go`` line on stdin
before each phase, so several load processes start their clocks together.

Why it should not be the bottleneck: no framework code, no decoding; a reply
is checked by comparing its bytes with the precomputed expected frame; the
replacement requests of one read are written with one ``write``; and its own
CPU time over the window is reported so a saturated generator is flagged
rather than silently under-reporting the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
import sys
import time
from array import array
from collections import deque
from typing import Any

from .jobs import IdleJob, LoadJob, Member, ReqRepJob, RoomJob, Step
from .limits import raise_nofile
from .wire import HEADER

_unpack = HEADER.unpack_from
_clock = time.perf_counter
MAX_SAMPLES = 200_000
MAX_ERROR_SAMPLES = 5


class Run:
    """Counters shared by every connection of this process."""

    def __init__(self) -> None:
        self.sending = False
        self.completed = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.latencies = array("d")
        self.ignored = 0

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(what)

    def take_window(self) -> tuple[int, array]:
        """Counts since the last call; later replies go to a fresh, discarded array."""
        done, lat = self.completed, self.latencies
        self.completed = 0
        self.latencies = array("d")
        return done, lat


def _describe(buf: bytes | bytearray, pos: int, end: int, want: str) -> str:
    msg_id, length = _unpack(buf, pos)
    return f"got id {msg_id} len {length} {bytes(buf[pos + 8 : min(end, pos + 72)])!r}, {want}"


class ReqRepConn(asyncio.Protocol):
    """A connection that keeps ``depth`` requests in flight and checks replies in order."""

    def __init__(self, run: Run, prefix: list[Step], cycle: list[Step], depth: int) -> None:
        self.run = run
        self.seq = prefix + cycle
        self.restart = len(prefix)
        self.next = 0
        self.depth = depth
        self.inflight: deque[tuple[Step, float]] = deque()
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.run.sending or self.inflight:
            self.run.error(f"connection lost with {len(self.inflight)} in flight: {exc!r}")
        if not self.lost.done():
            self.lost.set_result(None)

    def start(self) -> None:
        self.send(self.depth)

    def send(self, count: int) -> None:
        now = _clock()
        seq, nxt, inflight = self.seq, self.next, self.inflight
        out = []
        for _ in range(count):
            step = seq[nxt]
            nxt += 1
            if nxt == len(seq):
                nxt = self.restart
            inflight.append((step, now))
            out.append(step.request)
        self.next = nxt
        self.transport.write(b"".join(out))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        size = len(buf)
        pos = 0
        done = 0
        now = _clock()
        run = self.run
        record = run.latencies.append
        inflight = self.inflight
        while size - pos >= 8:
            msg_id, length = _unpack(buf, pos)
            end = pos + 8 + length
            if end > size:
                break
            if not inflight:
                run.error(_describe(buf, pos, end, "with nothing in flight"))
                pos = end
                continue
            step, sent = inflight.popleft()
            expected = step.expected
            if expected is None:
                if msg_id != step.expected_id:
                    run.error(_describe(buf, pos, end, f"want id {step.expected_id}"))
            elif end - pos != len(expected) or not buf.startswith(expected, pos):
                run.error(_describe(buf, pos, end, f"want {expected[:72]!r}"))
            record(now - sent)
            pos = end
            done += 1
        del buf[:pos]
        run.completed += done
        if done and run.sending:
            self.send(done)


class RoomConn(asyncio.Protocol):
    """A room member: logs in, joins, then says things and receives the room's messages."""

    def __init__(self, run: RoomRun, member: Member) -> None:
        self.run = run
        self.member = member
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting: tuple[Step, asyncio.Future[None]] | None = None
        self.sent_at: deque[float] = deque()
        self.says = 0
        self.timer: asyncio.TimerHandle | None = None
        self.heard = [0] * run.room_size  # copies received from each sender: exactly once each

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.run.sending:
            self.run.error(f"member {self.member.index} lost: {exc!r}")
        if self.waiting is not None and not self.waiting[1].done():
            self.waiting[1].set_exception(ConnectionError("lost during setup"))

    async def setup(self, timeout: float) -> None:
        """Log in and join, one request at a time, each reply's id checked."""
        loop = asyncio.get_running_loop()
        for step in self.member.setup:
            fut: asyncio.Future[None] = loop.create_future()
            self.waiting = (step, fut)
            self.transport.write(step.request)  # type: ignore[union-attr]
            await asyncio.wait_for(fut, timeout)
        self.waiting = None

    def say(self) -> None:
        self.sent_at.append(_clock())
        self.says += 1
        self.transport.write(self.member.say)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        size = len(buf)
        pos = 0
        run = self.run
        deliveries = run.deliveries
        me = self.member.index
        heard = self.heard
        got = 0
        while size - pos >= 8:
            msg_id, length = _unpack(buf, pos)
            end = pos + 8 + length
            if end > size:
                break
            if msg_id == 14:
                sender = deliveries.get(bytes(buf[pos:end]))
                if sender is None:
                    run.error(_describe(buf, pos, end, "not a RoomMessage anyone said"))
                    pos = end
                    continue
                heard[sender] += 1
                if sender == me:
                    if self.sent_at:
                        run.latencies.append(_clock() - self.sent_at.popleft())
                        if run.flood and run.sending:
                            self.say()
                    else:
                        run.error(f"member {me} got its own message without saying it")
                got += 1
            elif msg_id in run.ignore_ids:
                run.ignored += 1
            elif self.waiting is not None:
                step, fut = self.waiting
                if msg_id != step.expected_id:
                    run.error(_describe(buf, pos, end, f"setup wants id {step.expected_id}"))
                if not fut.done():
                    fut.set_result(None)
            else:
                run.error(_describe(buf, pos, end, "unexpected during the room phase"))
            pos = end
        del buf[:pos]
        run.completed += got
        run.delivered_total += got


class RoomRun(Run):
    """Room counters: deliveries in the window and in total, for the missing count."""

    def __init__(self, job: RoomJob) -> None:
        super().__init__()
        self.deliveries = job.deliveries
        self.ignore_ids = job.ignore_ids
        self.flood = job.rate is None
        self.delivered_total = 0
        self.room_size = job.room_size


class IdleConn(asyncio.Protocol):
    """A connection that only ever answers the question "are you still there?"."""

    def __init__(self, ping: Step) -> None:
        self.ping_step = ping
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(False)

    def ping(self) -> asyncio.Future[bool]:
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(self.ping_step.request)  # type: ignore[union-attr]
        return self.answer

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= 8:
            msg_id, length = _unpack(self.buf, 0)
            if len(self.buf) >= 8 + length:
                del self.buf[: 8 + length]
                if self.answer is not None and not self.answer.done():
                    self.answer.set_result(msg_id == self.ping_step.expected_id)


class Control:
    """The stdio conversation with the orchestrator."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()

    def emit(self, event: str, **fields: Any) -> None:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()

    async def wait_go(self) -> None:
        line = await self.loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            raise SystemExit(f"expected 'go' from the orchestrator, got {line!r}")


def _latency_payload(samples: array) -> dict[str, Any]:
    """Samples (seconds) as base64 doubles, thinned by a stride to bound the size."""
    worst = max(samples) if samples else 0.0
    count = len(samples)
    if count > MAX_SAMPLES:
        samples = samples[:: -(-count // MAX_SAMPLES)]
    return {"count": count, "max": worst, "samples": base64.b64encode(samples.tobytes()).decode()}


async def _connect(job: LoadJob, factory: Any, port: int | None = None) -> Any:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(factory, job.host, port or job.port)
    return proto


class _WsWriter:
    """What a connection writes through on a WebSocket: each write is one binary message."""

    def __init__(self, ws: Any, binary: Any) -> None:
        self.ws = ws
        self.binary = binary

    def write(self, data: bytes) -> None:
        self.ws.send(self.binary, data)

    def close(self) -> None:
        self.ws.send_close()
        self.ws.disconnect()


async def _connect_ws(job: LoadJob, conn: Any) -> Any:
    """``conn`` (an asyncio.Protocol) over a WebSocket: picows parses, the conn checks bytes.

    Every binary message carries whole TLV frames, so the connection's own
    stream parser and byte-for-byte reply check run unchanged.
    """
    from picows import WSListener, WSMsgType, ws_connect

    class Bridge(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, ws: Any) -> None:
            conn.connection_made(_WsWriter(ws, WSMsgType.BINARY))

        def on_ws_frame(self, ws: Any, frame: Any) -> None:
            if frame.msg_type is WSMsgType.BINARY:
                conn.data_received(frame.get_payload_as_bytes())

        def on_ws_disconnected(self, ws: Any) -> None:
            conn.connection_lost(None)

    await ws_connect(Bridge, f"ws://{job.host}:{job.port}/", enable_auto_pong=True)
    return conn


async def _window(job: LoadJob, run: Run) -> dict[str, Any]:
    """Warm up, then measure for ``duration``: completed, CPU and the latency samples."""
    await asyncio.sleep(job.warmup)
    run.take_window()
    cpu0, t0 = time.process_time(), _clock()
    await asyncio.sleep(job.duration)
    done, lat = run.take_window()
    cpu1, t1 = time.process_time(), _clock()
    return {
        "completed": done,
        "window_s": t1 - t0,
        "cpu_s": cpu1 - cpu0,
        "latency": _latency_payload(lat),
    }


async def run_reqrep(job: LoadJob, work: ReqRepJob, ctl: Control) -> dict[str, Any]:
    run = Run()
    conns: list[ReqRepConn] = []
    for prefix in work.prefixes:
        if job.extra.get("ws"):
            conn = ReqRepConn(run, prefix, work.cycle, work.depth)
            conns.append(await _connect_ws(job, conn))
            continue
        conns.append(
            await _connect(job, lambda p=prefix: ReqRepConn(run, p, work.cycle, work.depth))
        )
    ctl.emit("ready", connections=len(conns))
    await ctl.wait_go()
    run.sending = True
    for conn in conns:
        conn.start()
    stats = await _window(job, run)
    run.sending = False
    deadline = _clock() + job.drain_timeout
    while any(c.inflight for c in conns) and _clock() < deadline:
        await asyncio.sleep(0.01)
    unanswered = sum(len(c.inflight) for c in conns)
    if unanswered:
        run.error(f"{unanswered} requests unanswered {job.drain_timeout}s after the window")
    for conn in conns:
        conn.transport.close()  # type: ignore[union-attr]
    return {**stats, "errors": run.errors, "error_samples": run.error_samples}


async def run_room(job: LoadJob, work: RoomJob, ctl: Control) -> dict[str, Any]:
    run = RoomRun(work)
    members: list[RoomConn] = []
    for member in work.members:
        port = job.ports[member.node] if job.ports else job.port
        members.append(await _connect(job, lambda m=member: RoomConn(run, m), port))
    await asyncio.gather(*(m.setup(job.drain_timeout * 4) for m in members))
    ctl.emit("ready", connections=len(members))
    await ctl.wait_go()
    loop = asyncio.get_running_loop()
    run.sending = True
    if work.rate is None:
        for m in members:
            for _ in range(work.depth):
                m.say()
    else:
        interval = 1.0 / work.rate
        start = loop.time()

        def tick(m: RoomConn, due: float) -> None:
            if run.sending:
                m.say()
                m.timer = loop.call_at(due + interval, tick, m, due + interval)

        for m in members:
            due = start + interval * (m.member.index % work.room_size) / work.room_size
            m.timer = loop.call_at(due, tick, m, due)
    stats = await _window(job, run)
    run.sending = False
    for m in members:
        if m.timer is not None:
            m.timer.cancel()
    deadline = _clock() + job.drain_timeout
    seen = -1
    # Copies from another node come through the broker, later than the acks from ours:
    # wait for a longer quiet spell before calling the rest missing.
    quiet = 1.0 if len(job.ports) > 1 else 0.2
    while _clock() < deadline and (any(m.sent_at for m in members) or seen != run.delivered_total):
        seen = run.delivered_total
        await asyncio.sleep(quiet)
    unacked = sum(len(m.sent_at) for m in members)
    if unacked:
        run.error(f"{unacked} SayReqs never came back to their sender")
    for m in members:
        m.transport.close()  # type: ignore[union-attr]
    return {
        **stats,
        "errors": run.errors,
        "error_samples": run.error_samples,
        "says": sum(m.says for m in members),
        "delivered_total": run.delivered_total,
        "ignored": run.ignored,
        # per member: its says, and how many copies it got from each sender (by index)
        "said": {str(m.member.index): m.says for m in members},
        "heard": {str(m.member.index): m.heard for m in members},
    }


async def run_idle(job: LoadJob, work: IdleJob, ctl: Control) -> dict[str, Any]:
    ctl.emit("ready", connections=0)
    await ctl.wait_go()
    conns: list[IdleConn] = []
    failures: list[str] = []
    t0 = _clock()
    for start in range(0, work.count, work.concurrency):
        batch = range(start, min(start + work.concurrency, work.count))
        made = await asyncio.gather(
            *(_connect(job, lambda: IdleConn(work.ping)) for _ in batch), return_exceptions=True
        )
        for item in made:
            if isinstance(item, BaseException):
                failures.append(repr(item))
            else:
                conns.append(item)
    connect_s = _clock() - t0
    first = await _ping_all(conns, work.timeout)
    ctl.emit("pinged", connected=len(conns), answered=first, connect_s=connect_s)
    await ctl.wait_go()
    t1 = _clock()
    second = await _ping_all(conns, work.timeout)
    ping_s = _clock() - t1
    errors = len(failures) + (len(conns) - first) + (len(conns) - second)
    for conn in conns:
        conn.transport.close()  # type: ignore[union-attr]
    return {
        "connected": len(conns),
        "answered_first": first,
        "answered": second,
        "connect_s": connect_s,
        "ping_all_s": ping_s,
        "errors": errors,
        "error_samples": failures[:MAX_ERROR_SAMPLES],
    }


async def _ping_all(conns: list[IdleConn], timeout: float) -> int:
    """Ping every connection at once; how many answered with a pong in time."""
    answers = [c.ping() for c in conns]
    done, _ = await asyncio.wait(answers, timeout=timeout) if answers else (set(), set())
    return sum(1 for fut in done if fut.result())


async def amain(job: LoadJob) -> None:
    ctl = Control()
    work = job.work
    if isinstance(work, ReqRepJob):
        result = await run_reqrep(job, work, ctl)
    elif isinstance(work, RoomJob):
        result = await run_room(job, work, ctl)
    else:
        result = await run_idle(job, work, ctl)
    ctl.emit("result", **result)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0], "rb") as f:
        job: LoadJob = pickle.load(f)
    raise_nofile(job.nofile)
    import uvloop

    uvloop.run(amain(job))


if __name__ == "__main__":
    main()
