"""Logic workers, writers and the four resource models that wire them to links.

A logic worker owns four queues served in the go-sgs priority order: received
messages, then receive-interrupts, then send-interrupts, then active pushes
(timers, posted work). A link is pinned to one worker, so its messages are
handled in arrival order whatever the model. Workers are plain tasks waiting
on a future when idle: no asyncio.Queue, no task per message.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .errors import HandlerError, ProtocolError, UnknownMessageError
from .link import Link, LinkState
from .message import Message
from .metrics.meter import LATENCY_BUCKETS, TypeMeter, WorkerUsage
from .settings import ResourceModel

if TYPE_CHECKING:
    from .bindings import Player
    from .cluster.stall import StallGuard
    from .framework import Server
    from .store import PlayerStore

log = logging.getLogger("sgs.dispatcher")

_OPEN = LinkState.OPEN
Frames = list[tuple[int, bytes]]
#: One compiled route: (type, decoder, composed call, meter, the call gives a
#: coroutine, the frame encoder of the declared reply type).
Entry = tuple[type[Message], Callable[[bytes], Any], Any, TypeMeter, bool, Callable[[Any], bytes]]


class Item(enum.IntEnum):
    """What an entry of a worker's received queue carries (its kind, not its identity)."""

    FRAMES = 0  # frames to handle, in order
    REFUSED = 1  # ids the message budget refused: answer Error(rate_limited) in their place
    BROKEN = 2  # the stream broke (an oversized frame header): answer and close
    CONNECTED = 3  # a new link: run the on_connect hooks before its first frame


_FRAMES = Item.FRAMES
_REFUSED = Item.REFUSED
_BROKEN = Item.BROKEN


@dataclass(frozen=True, slots=True)
class Wiring:
    """What the workers need from the server, handed over when it starts serving.

    The route table, the durable store (``store_sync = "always"``: replies
    wait for a commit) and whether to time messages, plus the two server steps a
    worker runs in a link's order: the connect hooks and the link's finalizer.
    """

    table: dict[int, Entry]
    durable: PlayerStore | None
    timed: bool  # metrics on, or a route asked for slow-handler warnings
    connected: Callable[[Link], Awaitable[None]]
    finalize: Callable[[Link], Awaitable[None]]


class _Task:
    """Wake-up plumbing shared by logic workers and writers."""

    __slots__ = ("_waiter", "_stopping", "task", "name")

    def __init__(self, name: str) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self._stopping = False
        self.task: asyncio.Task[None] | None = None
        self.name = name

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _sleep(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def stop(self) -> None:
        """Finish what is queued, then end."""
        self._stopping = True
        self._wake()


class Iteration:
    """Whether a read was already handled inline in this turn of the event loop."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = False  # read it before calling first(): most reads find it open

    def first(self) -> bool:
        """True for the first call in a loop iteration (reset by a callback at its end)."""
        if self.open:
            return False
        self.open = True
        asyncio.get_running_loop().call_soon(self._close)
        return True

    def _close(self) -> None:
        self.open = False


class LogicWorker(_Task):
    __slots__ = (
        "server",
        "received",
        "recv_interrupts",
        "send_interrupts",
        "active",
        "busy",
        "owner",
        "commits",
        "timed",
        "usage",
        "inline",
        "batch",
        "outcomes",
        "stats",
        "table",
        "durable",
        "connected",
        "finalize",
        "stall",
    )

    def __init__(
        self,
        server: Server,
        name: str,
        wiring: Wiring,
        owner: Link | None = None,
        usage: WorkerUsage | None = None,
        batch: Iteration | None = None,
    ) -> None:
        super().__init__(name)
        self.server = server
        self.outcomes = server.outcomes
        self.stats = server.stats
        self.table = wiring.table
        self.durable = wiring.durable
        self.connected = wiring.connected
        self.finalize = wiring.finalize
        self.batch = batch if batch is not None else Iteration()  # shared by a dispatcher
        self.owner = owner  # model 1: the one link this worker serves
        # Metrics on, or a route asked for slow-handler warnings
        # (timing_middleware): time runs of messages and the busy share.
        self.timed = wiring.timed
        self.usage = usage if usage is not None else WorkerUsage()
        self.received: deque[tuple[Item, Link, Any]] = deque()
        self.recv_interrupts: deque[Link] = deque()
        self.send_interrupts: deque[Link] = deque()
        self.active: deque[Callable[[], Any]] = deque()
        self.busy = False
        self.commits: set[asyncio.Task[None]] = set()  # store_sync = "always" releases
        # A read that finds this worker asleep is handled where it arrived
        # (post_frames), except with store_sync = "always": there every pass
        # holds its replies until a commit, which the worker task arranges.
        self.inline = wiring.durable is None
        # On a cluster: the ownership deadline of the request path (set_stall).
        self.stall: StallGuard | None = None

    def post_frames(self, link: Link, frames: Frames) -> None:
        """Frames of one read (never empty), handled in order after what is queued.

        A read that finds the worker asleep with nothing queued is handled
        where it arrived: its handlers would run next, in this order, with
        nothing in between, so running the plain ones now changes no ordering
        and no exclusivity (the worker is marked busy meanwhile), and saves two
        hand-offs: to the worker task, and to the writer. The replies of the
        pass leave at its end in one write, as a hand-written protocol server
        sends them. At the first route that awaits, the rest goes to the
        worker task. (Inline here, not a method of its own: one call less per read.)
        """
        # On a cluster, past the ownership deadline (a stalled loop, a lost
        # broker) the read goes to the worker task, which re-checks first.
        stall = self.stall
        if (
            self._waiter is None
            or not self.inline
            or (stall is not None and stall.clock() >= stall.until)
        ):
            self.received.append((_FRAMES, link, frames))
            if self._waiter is not None:
                self._wake()
            return
        self.busy = True
        # A read of one frame (a player waiting on a request) and the first
        # read of a loop iteration write their replies at the end of their
        # pass, without waiting for the writer. Further bursts in the same
        # iteration leave theirs to the writer, which writes every link after
        # all of them: under pipelined load, one burst of writes per iteration
        # wakes each client once, instead of once per link. A lone request
        # does not even open the iteration (no callback to reset it), so
        # nothing runs between its write and the next poll.
        direct = len(frames) == 1 or (not self.batch.open and self.batch.first())
        scheduled = link.scheduled
        if direct:
            link.scheduled = True  # hold this pass's replies for the one write below
        try:
            i = self._pass(link, frames, 0)
        except Exception:  # a framework bug must not stop the other links
            log.exception("%s: failed on link %d", self.name, link.id)
            i = len(frames)
        self.busy = False
        if direct and not scheduled:
            link.flush()
        if i < len(frames):  # an async route: the worker task takes over from there
            self.received.append((_FRAMES, link, frames[i:]))
            self._wake()
        self.stats.frames_in += i
        link.inbound_done(i)

    def post_refused(self, link: Link, refused: list[int]) -> None:
        """Ids the inbound budget refused, answered right behind the frames posted before."""
        self.received.append((_REFUSED, link, refused))
        self._wake()

    def post_broken(self, link: Link) -> None:
        """The link's stream cannot go on: answered and closed after what it sent before."""
        self.received.append((_BROKEN, link, None))
        self._wake()

    def post_connected(self, link: Link) -> None:
        """A new link: the connect hooks run before its first message."""
        self.received.append((Item.CONNECTED, link, None))
        self._wake()

    def post_recv_interrupt(self, link: Link) -> None:
        self.recv_interrupts.append(link)
        self._wake()

    def post_send_interrupt(self, link: Link) -> None:
        self.send_interrupts.append(link)
        self._wake()

    def post_active(self, fn: Callable[[], Any]) -> None:
        self.active.append(fn)
        self._wake()

    @property
    def idle(self) -> bool:
        return not (self.busy or self.received or self.commits)

    @property
    def waiting(self) -> int:
        """Frames queued for this worker (the queue-depth gauge)."""
        return sum(len(item) for kind, _, item in self.received if kind is _FRAMES)

    async def run(self) -> None:
        finalize = self.finalize
        received, recv_int, send_int, active = (
            self.received,
            self.recv_interrupts,
            self.send_interrupts,
            self.active,
        )
        handle = self._handle
        while True:
            if received:
                kind, link, item = received.popleft()
                self.busy = True
                try:
                    if kind is _FRAMES:
                        await handle(link, item)
                    elif kind is _REFUSED:
                        self.outcomes.rate_limited(link, item)
                    elif kind is _BROKEN:
                        self.outcomes.broken_stream(link, link.reader.broken)  # type: ignore[arg-type]
                    else:
                        await self.connected(link)
                except Exception:  # a framework bug must not stop the other links
                    log.exception("%s: failed on link %d", self.name, link.id)
                self.busy = False
            elif recv_int:
                await finalize(recv_int.popleft())
            elif send_int:
                await finalize(send_int.popleft())
            elif active:
                await self._run_active(active.popleft())
            elif self._stopping:
                if self.owner is None or self.owner.finalized:
                    return
                await self._sleep()
            else:
                await self._sleep()

    async def _handle(self, link: Link, frames: list[tuple[int, bytes]]) -> None:
        stall = self.stall
        if stall is not None and stall.clock() >= stall.until:
            if not await self._still_owner(link, [msg_id for msg_id, _ in frames]):
                self.stats.frames_in += len(frames)
                link.inbound_done(len(frames))
                return
        durable = self.durable
        if durable is None:
            await self._handle_frames(link, frames)
            return
        # store_sync = "always": the replies of this pass leave only once the
        # state they acknowledge is durable. The worker does not wait for the
        # commit: it goes on with other links, whose passes join the same
        # transaction (group commit), and the commit releases the replies.
        link.hold += 1
        # The player whose state this pass changes: its own login, or the one
        # it makes. A newer login may replace it while the commit is pending.
        bindings = self.server.bindings
        player = bindings.player_of(link)
        try:
            await self._handle_frames(link, frames)
        finally:
            if durable.unsaved:
                if player is None:
                    player = bindings.player_of(link)
                task = asyncio.get_running_loop().create_task(
                    self._release_after_commit(link, player)
                )
                self.commits.add(task)
                task.add_done_callback(self.commits.discard)
            else:  # nothing to wait for (echo, pings): no task
                link.release_hold()

    async def _still_owner(self, link: Link, msg_ids: list[int]) -> bool:
        """Past the ownership deadline: may these requests (or replies) of a bound link go on?

        The cluster's keeper re-validates first (one round shared by every
        stalled link). A link whose account another node took meanwhile gets
        ``Error(replaced)`` and is closed, its requests unanswered; when the
        broker cannot confirm in time, each gets ``cluster_unavailable``.
        Links not logged in are not held. The caller counts the frames.
        """
        server = self.server
        bindings = server.bindings
        player = bindings.player_of(link)
        stall = self.stall
        if player is None or stall is None:
            return True
        verified = await stall.verify(server.settings.cluster_timeout)
        if verified and bindings.player_of(link) is player:
            return True
        if not verified and link.state is _OPEN:
            refused = HandlerError(
                "cluster_unavailable", "the cluster cannot confirm this login now; try again"
            )
            for msg_id in msg_ids:
                self.outcomes.refused(link, refused, msg_id)
        elif bindings.player_of(link) is not player:
            await bindings.tell_replaced(player)
        return False

    async def _release_after_commit(self, link: Link, player: Player | None) -> None:
        """Release ``link``'s replies once the changes of its pass are durable.

        Commits complete in order, so when the last pass waiting for one is
        released, every earlier pass of the link is durable too. A player
        whose state the store let go of with changes unwritten (a newer owner
        fenced them, even after this link was replaced) gets no reply that
        acknowledges them: the link is told ``replaced`` instead.
        """
        try:
            await self.server.store.commit()
            if player is not None and player.state.lost:
                self.server.bindings.refuse_held(player)
        except Exception as exc:
            self.outcomes.commit_failed(link, exc)
        finally:
            link.release_hold()

    async def _handle_frames(self, link: Link, frames: list[tuple[int, bytes]]) -> None:
        """One pass over a read's frames: plain routes in :meth:`_pass`, the rest awaited."""
        n = len(frames)
        i = self._pass(link, frames, 0)
        while i < n:
            await self._awaited(link, frames[i])
            i += 1
            # The await may have spanned a stall: re-check before the rest of the read.
            stall = self.stall
            if i < n and stall is not None and stall.clock() >= stall.until:
                if not await self._still_owner(link, [msg_id for msg_id, _ in frames[i:]]):
                    break
            i = self._pass(link, frames, i)
        self.stats.frames_in += n
        link.inbound_done(n)

    def _pass(self, link: Link, frames: list[tuple[int, bytes]], i: int) -> int:
        """Handle ``frames[i:]`` in order while their routes are plain calls.

        Returns the index of the first frame whose route must be awaited, or
        ``len(frames)`` once done (or once the link stopped being open: the
        rest of the read is dropped with it).
        """
        table = self.table
        write = link.write_frame
        ctx = link.ctx
        n = len(frames)
        # Timed (metrics on, or timing_middleware): runs of consecutive messages
        # of one type (usually the whole read) cost one clock read and one
        # histogram observation each, not two clock reads per message.
        timed = self.timed
        started = run_start = perf_counter() if timed else 0.0
        run_meter: TypeMeter | None = None
        run_n = 0
        while i < n:
            if link.state is not _OPEN:
                i = n
                break
            msg_id, payload = frames[i]
            entry = table.get(msg_id)
            if entry is None:
                self.outcomes.protocol_error(link, self._unroutable(msg_id))
                i += 1
                continue
            msg_type, decode, handler, meter, is_async, encode = entry
            if is_async:
                break
            i += 1
            try:
                msg = decode(payload)
            except Exception:
                msg = self._decode_slowly(link, msg_id, payload, meter)
                if msg is None:
                    continue
            if timed:
                if meter is not run_meter:
                    if run_meter is not None:
                        now = perf_counter()
                        self._run_done(link, run_meter, run_n, now - run_start)
                        run_start = now
                    run_meter, run_n = meter, 0
                run_n += 1
            ctx.msg_id = msg_id
            try:
                resp = handler(ctx, msg)
                if resp is not None:
                    write(encode(resp))
            except Exception as exc:
                self._failed(link, msg_id, exc)
            if link.pending_close is not None:
                link.close(link.pending_close)
        if timed:
            now = perf_counter()
            if run_meter is not None:  # _run_done, inlined: once per pass
                took = now - run_start
                run_meter.seconds += took
                run_meter.buckets[bisect_left(LATENCY_BUCKETS, took / run_n)] += run_n
                if took > run_meter.slow:
                    self._slow(link, run_meter, run_n, took)
            self.usage.busy_seconds += now - started
        return i

    async def _awaited(self, link: Link, frame: tuple[int, bytes]) -> None:
        """One frame whose route is a coroutine (middleware, or an ``async def`` handler)."""
        if link.state is not _OPEN:
            return
        msg_id, payload = frame
        _, decode, handler, meter, _, encode = self.table[msg_id]
        try:
            msg = decode(payload)
        except Exception:
            msg = self._decode_slowly(link, msg_id, payload, meter)
            if msg is None:
                return
        timed = self.timed
        started = perf_counter() if timed else 0.0
        link.ctx.msg_id = msg_id
        try:
            resp = await handler(link.ctx, msg)
            if resp is not None:
                # A route that awaited across a stall answers only once ownership is confirmed.
                stall = self.stall
                if stall is None or stall.clock() < stall.until:
                    link.write_frame(encode(resp))
                elif await self._still_owner(link, [msg_id]):
                    link.write_frame(encode(resp))
        except Exception as exc:
            self._failed(link, msg_id, exc)
        if link.pending_close is not None:
            link.close(link.pending_close)
        if timed:
            took = perf_counter() - started
            self._run_done(link, meter, 1, took)
            self.usage.busy_seconds += took

    def _decode_slowly(
        self, link: Link, msg_id: int, payload: bytes, meter: TypeMeter
    ) -> Message | None:
        """The codec's full path after the fast decoder failed: edge cases, a typed error."""
        try:
            return self.server.codec.decode(msg_id, payload)
        except ProtocolError as exc:
            meter.decode_errors += 1
            self.outcomes.protocol_error(link, exc)
            return None

    def _failed(self, link: Link, msg_id: int, exc: Exception) -> None:
        """A route raised: HandlerError is an answer (Error(code)), anything else a crash."""
        if isinstance(exc, HandlerError):
            self.outcomes.refused(link, exc, msg_id)
        else:
            self.outcomes.handler_crashed(link, msg_id)

    def _run_done(self, link: Link, meter: TypeMeter, n: int, took: float) -> None:
        """``n`` consecutive messages of ``meter``'s type took ``took`` seconds."""
        meter.observe(took, n)
        if took > meter.slow:
            self._slow(link, meter, n, took)

    def _slow(self, link: Link, meter: TypeMeter, n: int, took: float) -> None:
        """timing_middleware's warning: this run held the worker (and its other links) up."""
        log.warning(
            "link %d: %s took %.1f ms%s (slow above %g ms): the worker's other links waited",
            link.id,
            meter.name,
            took * 1000,
            f" for {n} messages in one pass" if n > 1 else "",
            meter.slow * 1000,
            extra={"link_id": link.id, "msg_id": meter.msg_id, "peer": link.peer},
        )

    def _unroutable(self, msg_id: int) -> ProtocolError:
        if msg_id in self.server.catalog:
            err = UnknownMessageError(msg_id, self.server.codec.name)
            err.code = "no_handler"
            err.args = (f"message id {msg_id} is known but has no handler on the server",)
            return err
        return UnknownMessageError(msg_id, self.server.codec.name)

    async def _run_active(self, fn: Callable[[], Any]) -> None:
        try:
            result = fn()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("active task %r on %s raised", fn, self.name)


class SendWorker(_Task):
    """Flushes the links that have queued frames: one write per link per pass."""

    __slots__ = ("dirty", "owner")

    def __init__(self, name: str, owner: Link | None = None) -> None:
        super().__init__(name)
        self.owner = owner
        self.dirty: deque[Link] = deque()

    def schedule(self, link: Link) -> None:
        self.dirty.append(link)
        if self._waiter is not None:
            self._wake()

    async def run(self) -> None:
        dirty = self.dirty
        while True:
            if dirty:
                while dirty:
                    dirty.popleft().flush()
            elif self._stopping:
                return
            else:
                await self._sleep()


class Dispatcher:
    """Builds the workers of one resource model and attaches links to them."""

    def __init__(self, server: Server, wiring: Wiring) -> None:
        settings = server.settings
        self.server = server
        self.wiring = wiring
        self.model = model = settings.resource_model
        self.per_link_logic = model is ResourceModel.per_link
        self.per_link_send = model in (ResourceModel.per_link, ResourceModel.shared_logic)
        self.reader_tasks = model is not ResourceModel.shared_all
        n = 1 if self.per_link_logic else settings.logic_workers
        self.batch = Iteration()  # one per server: its workers write in one burst
        self.logic = [LogicWorker(server, f"logic-{i}", wiring, batch=self.batch) for i in range(n)]
        self.per_link_usage = WorkerUsage()  # model 1: every per-link worker adds here
        m = 0 if self.per_link_send else settings.send_workers
        self.writers = [SendWorker(f"send-{i}") for i in range(m)]
        self.tasks: set[asyncio.Task[None]] = set()
        self.stall: StallGuard | None = None

    def set_stall(self, stall: StallGuard | None) -> None:
        """The cluster's ownership deadline, checked by every worker before it serves a read."""
        self.stall = stall
        for worker in self.logic:
            worker.stall = stall
        for link in self.server.links.values():
            if link.worker is not None:
                link.worker.stall = stall

    def _spawn(self, worker: _Task, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=worker.name)
        worker.task = task
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("worker %s died", task.get_name(), exc_info=task.exception())

    def start(self) -> None:
        for worker in self.logic:
            self._spawn(worker, worker.run())
        for writer in self.writers:
            self._spawn(writer, writer.run())

    def attach(self, link: Link) -> None:
        if self.per_link_logic:
            worker = LogicWorker(
                self.server,
                f"logic-link-{link.id}",
                self.wiring,
                owner=link,
                usage=self.per_link_usage,
                batch=self.batch,
            )
            worker.stall = self.stall
            self._spawn(worker, worker.run())
        else:
            worker = self.logic[link.id % len(self.logic)]
        link.worker = worker
        if self.per_link_send:
            writer = SendWorker(f"send-link-{link.id}", owner=link)
            self._spawn(writer, writer.run())
        else:
            writer = self.writers[link.id % len(self.writers)]
        link.writer = writer
        if self.reader_tasks:
            link.rbuf = []
            self.tasks.add(task := asyncio.get_running_loop().create_task(link.read_loop()))
            task.add_done_callback(self._task_done)

    def detach(self, link: Link) -> None:
        """The link is finalized: its own workers end once their queues are empty."""
        if self.per_link_logic and link.worker is not None:
            link.worker.stop()
        if self.per_link_send and link.writer is not None:
            link.writer.stop()

    def worker_for(self, key: int = 0) -> LogicWorker:
        """The shared worker that runs timers and posted work for ``key``."""
        return self.logic[key % len(self.logic)]

    def idle(self) -> bool:
        for link in self.server.links.values():
            if link.rbuf or (link.worker is not None and not link.worker.idle):
                return False
        return all(worker.idle for worker in self.logic)

    async def drain(self, deadline: float) -> bool:
        """Wait until every received message is handled, or the deadline passes."""
        loop = asyncio.get_running_loop()
        while not self.idle():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def stop(self, timeout: float) -> None:
        for worker in self.logic:
            worker.stop()
        for writer in self.writers:
            writer.stop()
        pending = set(self.tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
