"""The cluster over Redis: pub/sub for frames, scripts for bindings, leases for liveness.

Three long-lived tasks per node:

- the **writer** owns every command that changes or reads cluster state and
  every publish, in one ordered queue, sent as pipelines on one connection.
  One queue keeps this node's publishes in order (per-origin order) and puts
  a membership change before the count a handler asks for right after it.
  The queue is bounded: past ``cluster_publish_queue`` envelopes are dropped
  and counted, so a paused broker costs bounded memory;
- the **listener** reads the pub/sub connection (this node's channel, the
  control channel, and a group's channel only while the group has local
  members), checks each envelope's sequence, and delivers;
- the **keeper** refreshes the lease about once a second, reaps dead nodes
  (one node at a time, under a lock), and reconnects with backoff and jitter
  after any failure, then re-registers everything this node holds.

Local play never waits for any of them: a broadcast writes to the local
members first, and a handler's await on the broker is bounded by
``cluster_timeout``, after which it gets this node's own view.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..settings import mask_url
from . import envelope as env
from . import scripts
from .base import BindResult, Cluster, EpochClock

if TYPE_CHECKING:
    from ..framework import Server
    from ..group import Group
    from ..link import Link

log = logging.getLogger("sgs.cluster")

#: Queue items: (adds its command to a pipeline, future for the reply or None,
#: 1 if it is a delivery that counts as dropped when lost).
_Item = tuple[Callable[[Any], Any], "asyncio.Future[Any] | None", int]

BATCH = 512
BACKOFF_MAX = 5.0
BROKER_ERRORS = (RedisError, OSError, asyncio.TimeoutError, ConnectionError)


class ClusterDown(Exception):
    """The broker cannot be asked right now (down, paused or the queue is full)."""


class RedisCluster(Cluster):
    """A cluster node over one Redis server (see the module docstring)."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        s = server.settings
        self.url = s.cluster_url
        self.prefix = p = s.cluster_prefix
        self.lease_ms = int(s.cluster_lease * 1000)
        self.timeout = s.cluster_timeout
        # The writer, the keeper and the listener give the broker up to a
        # lease before declaring it lost: a node whose own loop is saturated
        # (a room flood) reads answers late without the broker being gone.
        self.io_timeout = max(s.cluster_timeout, s.cluster_lease)
        self.heartbeat = min(1.0, s.cluster_lease / 5)
        self.queue_max = s.cluster_publish_queue
        self.clock = EpochClock()
        self.node_epoch = 0
        self._origin = self.node_id.encode("ascii")
        self._ctl = f"{p}:ctl"
        self._mine = f"{p}:to:{self.node_id}"
        self._group_prefix = f"{p}:group:"
        self._lease_key = f"{p}:node:{self.node_id}"
        # Other nodes with members, per group: a broadcast is published only
        # when this is non-empty.
        self.interest: dict[str, set[str]] = {}
        self._seq: dict[str, int] = {}
        self._last: dict[str, dict[str, tuple[int, int]]] = {}
        self._queue: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._lease_ok = False
        self._stopping = False
        self._waiters: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._lead_local: dict[str, int] = {}
        self._wanted: set[str] = {self._ctl, self._mine}
        self._subscribed: set[str] = set()
        self._subs_changed = asyncio.Event()
        # A group channel whose SUBSCRIBE Redis has not confirmed yet, and the
        # membership changes held back until it has: a node announces members
        # only once it can hear the group's broadcasts.
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self._held: dict[str, list[_Item]] = {}
        self._pubsub: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._down_logged = False
        self._redis = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.io_timeout,
            socket_connect_timeout=self.timeout,
            health_check_interval=max(1, int(s.cluster_lease)),
            # No retries inside the client: a retried PUBLISH could deliver
            # twice (at most once is the contract), and the keeper reconnects.
            retry=Retry(NoBackoff(), 0),
        )
        self._sub_redis = aioredis.Redis.from_url(
            self.url,
            socket_timeout=None,
            socket_connect_timeout=self.timeout,
            health_check_interval=max(1, int(s.cluster_lease)),
            retry=Retry(NoBackoff(), 0),
        )
        self._scripts = {
            name: self._redis.register_script(getattr(scripts, name))
            for name in (
                "BIND",
                "REBIND",
                "UNBIND",
                "JOIN",
                "LEAVE",
                "RESYNC_GROUP",
                "REAP",
                "LEAD",
                "LIVE_NODES",
                "REAPER_LOCK",
            )
        }

    def _eval(self, pipe: Any, name: str, args: list[Any]) -> Any:
        """Queue script ``name`` on ``pipe`` (the pipeline loads it first if Redis lacks it)."""
        script = self._scripts[name]
        pipe.scripts.add(script)
        return pipe.evalsha(script.sha, 0, *args)

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._bounded(self._register(), self.timeout)
        except BROKER_ERRORS as exc:
            log.error(
                "cluster_url %s cannot be reached (%s); serving alone until it can",
                mask_url(self.url),
                _why(exc),
            )
            self._down_logged = True
        else:
            self._set_up(True)
            log.info(
                "cluster node %s joined %s (lease %.1fs)",
                self.node_id,
                mask_url(self.url),
                self.lease_ms / 1000,
            )
        for coro in (self._writer(), self._listener(), self._keeper(), self._sync_subs()):
            self._spawn(coro)

    async def stop(self) -> None:
        """Leave cleanly: drop this node's bindings, memberships and lease."""
        self._stopping = True
        await self._drain_queue(self.timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        if self.connected:
            try:
                await self._bounded(self._reap(self.node_id, force=True), self.timeout)
                log.info("cluster node %s left", self.node_id)
            except BROKER_ERRORS as exc:
                log.warning("could not deregister (%s): the reaper will", _why(exc))
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.cancel()
        if self._pubsub is not None:
            await _quietly(self._pubsub.aclose())
        await _quietly(self._sub_redis.aclose())
        await _quietly(self._redis.aclose())

    async def _drain_queue(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._queue and self.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def _bounded(self, coro: Any, timeout: float) -> Any:
        """Await ``coro`` for at most ``timeout`` seconds, then leave it behind.

        Not ``asyncio.wait_for``: that waits for the cancelled call to unwind,
        and a client call cancelled while the broker is frozen (SIGSTOP) can
        take as long to unwind as the freeze lasts. The abandoned call is
        cancelled and finishes on its own; its connection is not reused.
        """
        task = asyncio.ensure_future(coro)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned_done)
            raise TimeoutError(f"no answer from the broker within {timeout:g}s")
        return task.result()

    def _abandoned_done(self, task: asyncio.Task[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an abandoned call's failure is expected

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster task %s died", task.get_coro(), exc_info=task.exception())

    # -- health -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    @property
    def lease_held(self) -> bool:
        return self._lease_ok and self.connected

    def health(self) -> dict[str, Any]:
        return {**super().health(), "queued": len(self._queue), "epoch": self.node_epoch}

    async def nodes(self) -> list[str]:
        try:
            live = await self._call(lambda pipe: self._eval(pipe, "LIVE_NODES", [self.prefix]))
        except ClusterDown:
            return [self.node_id]
        return sorted(_text(n) for n in live)

    def _set_up(self, up: bool) -> None:
        if up:
            self._up.set()
            self._lease_ok = True
            if self._down_logged:
                log.info("cluster broker is back: node %s re-registered", self.node_id)
            self._down_logged = False
        else:
            self._up.clear()
            self._lease_ok = False

    def _broker_failed(self, exc: BaseException) -> None:
        if not self._down_logged:
            log.error(
                "cluster broker lost (%s): local play goes on, cross-node messages are "
                "dropped and counted until it is back",
                _why(exc),
            )
            self._down_logged = True
        self._set_up(False)

    # -- the ordered writer --------------------------------------------------

    def _enqueue(self, add: Callable[[Any], Any], fut: Any = None, delivery: int = 0) -> bool:
        if not self.connected or len(self._queue) >= self.queue_max:
            if delivery:
                self.stats.dropped += 1
            if fut is not None and not fut.done():
                fut.set_exception(ClusterDown("broker unavailable or queue full"))
            return False
        self._queue.append((add, fut, delivery))
        if not self._wake.is_set():
            self._wake.set()
        return True

    async def _call(self, add: Callable[[Any], Any]) -> Any:
        """Run one command through the ordered queue; ClusterDown when it cannot."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(add, fut)
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise ClusterDown("the broker did not answer within cluster_timeout") from None
        except BROKER_ERRORS as exc:
            raise ClusterDown(_why(exc)) from exc

    async def _writer(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), BATCH))]
            pipe = self._redis.pipeline(transaction=False)
            for add, _, _ in batch:
                add(pipe)
            try:
                results = await self._bounded(pipe.execute(raise_on_error=False), self.io_timeout)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                lost = sum(item[2] for item in batch) + sum(item[2] for item in queue)
                self.stats.dropped += lost
                for _, fut, _ in [*batch, *queue]:
                    if fut is not None and not fut.done():
                        fut.set_exception(ClusterDown(_why(exc)))
                queue.clear()
                self._broker_failed(exc)
                continue
            for (_, fut, delivery), result in zip(batch, results, strict=True):
                failed = isinstance(result, Exception)
                if delivery:
                    if failed:
                        self.stats.dropped += 1
                    else:
                        self.stats.published += 1
                if fut is not None and not fut.done():
                    if failed:
                        fut.set_exception(ClusterDown(str(result)))
                    else:
                        fut.set_result(result)
                elif failed:
                    log.warning("cluster command failed: %s", result)

    def _publish(self, channel: str, kind: env.Kind, body: bytes) -> bool:
        seq = self._seq.get(channel, 0) + 1
        self._seq[channel] = seq  # taken even if dropped: receivers then see the gap
        data = env.pack(kind, self._origin, seq, self.node_epoch, body)
        return self._enqueue(lambda pipe: pipe.publish(channel, data), None, 1)

    # -- groups -------------------------------------------------------------

    def _member(self, link: Link) -> str:
        return f"{self.node_id}/{link.id}"

    def _interest_envelope(self, joined: bool, group: str, node: str | None = None) -> bytes:
        body = env.pack_interest(joined, node or self.node_id, group)
        return env.pack(env.Kind.INTEREST, self._origin, 0, self.node_epoch, body)

    def group_joined(self, group: Group, link: Link, label: str) -> None:
        name = group.name
        channel = self._group_prefix + name
        if len(group) == 1:
            if channel not in self._subscribing:
                self._subscribing[channel] = asyncio.get_running_loop().create_future()
            self._want(channel, True)
        args = [
            self.prefix,
            self.node_id,
            name,
            self._member(link),
            label,
            self._interest_envelope(True, name),
        ]
        self._member_change(channel, lambda pipe: self._eval(pipe, "JOIN", args))

    def group_left(self, group: Group, link: Link) -> None:
        name = group.name
        channel = self._group_prefix + name
        if len(group) == 0:
            self._want(channel, False)
        args = [
            self.prefix,
            self.node_id,
            name,
            self._member(link),
            self._interest_envelope(False, name),
        ]
        self._member_change(channel, lambda pipe: self._eval(pipe, "LEAVE", args))

    def _member_change(self, channel: str, add: Callable[[Any], Any]) -> None:
        if channel in self._subscribing:
            self._held.setdefault(channel, []).append((add, None, 0))
        else:
            self._enqueue(add)

    def _subscribed_to(self, channel: str) -> None:
        """Redis confirmed a SUBSCRIBE: release the membership changes held for it."""
        fut = self._subscribing.pop(channel, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
        for add, _, _ in self._held.pop(channel, ()):
            self._enqueue(add)

    async def _joined(self, group: Group) -> None:
        """Wait (bounded) until this node's membership of ``group`` reached Redis's queue."""
        fut = self._subscribing.get(self._group_prefix + group.name)
        if fut is not None and self.connected and self._pubsub is not None:
            await asyncio.wait_for(asyncio.shield(fut), self.timeout)

    def group_publish(self, group: Group, frame: bytes) -> None:
        if self.interest.get(group.name):
            self._publish(self._group_prefix + group.name, env.Kind.GROUP, frame)

    async def group_size(self, group: Group) -> int:
        key = f"{self.prefix}:gmembers:{group.name}"
        try:
            await self._joined(group)
            return int(await self._call(lambda pipe: pipe.hlen(key)))
        except (ClusterDown, TimeoutError):
            return len(group)

    async def group_labels(self, group: Group) -> list[str]:
        key = f"{self.prefix}:gmembers:{group.name}"
        try:
            await self._joined(group)
            values = await self._call(lambda pipe: pipe.hvals(key))
        except (ClusterDown, TimeoutError):
            return group.local_labels()
        return [_text(v) for v in values]

    # -- bindings -----------------------------------------------------------

    async def bind(self, key: str, link: Link) -> BindResult:
        args = [self.prefix, self.node_id, str(link.id), key]
        try:
            epoch, prev, alive = await self._call(lambda pipe: self._eval(pipe, "BIND", args))
        except ClusterDown as exc:
            # Single-node semantics until the broker is back; re-registration
            # then settles who holds the key (the newer epoch wins).
            log.warning("binding %r on this node only: %s", key, exc)
            return BindResult(self.clock.next())
        self.clock.last = max(self.clock.last, int(epoch))
        return BindResult(int(epoch), _text(prev) if prev else None, bool(alive))

    def unbind(self, key: str, link: Link, epoch: int) -> None:
        args = [self.prefix, self.node_id, str(link.id), key, str(epoch)]
        self._enqueue(lambda pipe: self._eval(pipe, "UNBIND", args))

    async def kick(self, key: str, epoch: int, node: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters[(key, epoch)] = waiter
        try:
            if not self._publish(f"{self.prefix}:to:{node}", env.Kind.KICK,
                                 env.pack_kick(key, epoch, self.node_id)):  # fmt: skip
                return False
            await asyncio.wait_for(waiter, timeout)
            return True
        except (TimeoutError, asyncio.CancelledError):
            return False
        finally:
            self._waiters.pop((key, epoch), None)

    async def locate(self, key: str) -> str | None:
        bk = f"{self.prefix}:bind:{key}"
        try:
            node = await self._call(lambda pipe: pipe.hget(bk, "node"))
        except ClusterDown:
            return None
        return _text(node) if node else None

    def send_to(self, node: str, key: str, frame: bytes) -> bool:
        return self._publish(f"{self.prefix}:to:{node}", env.Kind.PUSH, env.pack_key(key, frame))

    async def lead(self, name: str) -> int | None:
        args = [self.prefix, self.node_id, name, str(self.lease_ms)]
        try:
            number = await self._call(lambda pipe: self._eval(pipe, "LEAD", args))
        except ClusterDown:
            number = self._lead_local.get(name, 0) + 1  # alone: lead locally, keep counting
            self._lead_local[name] = number
            return number
        if number is None:
            self._lead_local.pop(name, None)
            return None
        self._lead_local[name] = int(number)
        return int(number)

    # -- registration, lease, reaper ---------------------------------------

    async def _register(self) -> None:
        """(Re-)announce everything this node holds, under a new node epoch."""
        self.node_epoch = self.clock.next()
        r = self._redis
        pipe = r.pipeline(transaction=False)
        info = json.dumps({"epoch": self.node_epoch, "started": time.time()})
        pipe.set(self._lease_key, info, px=self.lease_ms)
        pipe.sadd(f"{self.prefix}:nodes", self.node_id)
        for group in list(self.server.groups.values()):
            if not len(group):
                continue
            args: list[Any] = [
                self.prefix,
                self.node_id,
                group.name,
                self._interest_envelope(True, group.name),
            ]
            for link_id, label in group._labels.items():
                args += [f"{self.node_id}/{link_id}", label]
            self._eval(pipe, "RESYNC_GROUP", args)
        players = list(self.server.bindings.players.values())
        for player in players:
            args = [self.prefix, self.node_id, str(player.link.id), player.key, str(player.epoch)]
            self._eval(pipe, "REBIND", args)
        results = await pipe.execute()
        for player, kept in zip(players, results[-len(players) :] if players else [], strict=True):
            if not kept:
                log.info("%r logged in elsewhere while this node was cut off", player.key)
                self.server.bindings.rebound_elsewhere(player.key)
        await self._load_interest()

    async def _load_interest(self) -> None:
        p = self.prefix
        names = [_text(g) for g in await self._redis.smembers(f"{p}:groups")]
        interest: dict[str, set[str]] = {}
        if names:
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.hkeys(f"{p}:gnodes:{name}")
            for name, nodes in zip(names, await pipe.execute(), strict=True):
                others = {_text(n) for n in nodes} - {self.node_id}
                if others:
                    interest[name] = others
        self.interest = interest

    async def _keeper(self) -> None:
        backoff = 0.1
        while True:
            if not self.connected:
                try:
                    await self._bounded(self._register(), self.io_timeout)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    self._broker_failed(exc)
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = 0.1
                self.stats.reconnects += 1
                self._set_up(True)
                self._subs_changed.set()
            try:
                await self._bounded(self._beat(), self.io_timeout)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._broker_failed(exc)
                continue
            await asyncio.sleep(self.heartbeat)

    async def _beat(self) -> None:
        info = json.dumps({"epoch": self.node_epoch, "at": time.time()})
        if not await self._redis.set(self._lease_key, info, px=self.lease_ms, xx=True):
            # The lease expired: this node was paused or cut off for longer
            # than cluster_lease, and may have been reaped. Fence: take a new
            # epoch and re-register; bindings that a newer login took since
            # are given up (their links get the replaced answer).
            self.stats.fenced += 1
            self._lease_ok = False
            log.warning("node %s lost its lease: re-registering under a new epoch", self.node_id)
            await self._register()
            self._lease_ok = True
        lock = self._scripts["REAPER_LOCK"]
        if await lock(args=[self.prefix, self.node_id, str(self.lease_ms)]):
            await self._reap_dead()

    async def _reap_dead(self) -> None:
        r = self._redis
        nodes = [_text(n) for n in await r.smembers(f"{self.prefix}:nodes")]
        others = [n for n in nodes if n != self.node_id]
        if not others:
            return
        pipe = r.pipeline(transaction=False)
        for node in others:
            pipe.exists(f"{self.prefix}:node:{node}")
        for node, alive in zip(others, await pipe.execute(), strict=True):
            if not alive:
                await self._reap(node, force=False)

    async def _reap(self, node: str, force: bool) -> None:
        args = [self.prefix, node, "1" if force else "0"]
        result = await self._scripts["REAP"](args=args)
        if not result:
            return
        removed, groups = int(result[0]), [_text(g) for g in result[1]]
        if node != self.node_id:
            self.stats.reaped += 1
            log.warning(
                "reaped node %s: its lease expired (%d bindings, %d groups)",
                node,
                removed,
                len(groups),
            )
        pipe = self._redis.pipeline(transaction=False)
        for name in groups:
            pipe.publish(self._ctl, self._interest_envelope(False, name, node))
            self._forget_interest(name, node)
        await pipe.execute()

    # -- the listener -------------------------------------------------------

    def _want(self, channel: str, wanted: bool) -> None:
        if wanted:
            self._wanted.add(channel)
        else:
            self._wanted.discard(channel)
        self._subs_changed.set()

    async def _sync_subs(self) -> None:
        """Make the pub/sub connection's channels follow ``_wanted``."""
        while True:
            await self._subs_changed.wait()
            self._subs_changed.clear()
            pubsub = self._pubsub
            if pubsub is None:
                continue
            add = self._wanted - self._subscribed
            drop = self._subscribed - self._wanted
            try:
                if add:
                    await pubsub.subscribe(*add)
                    self._subscribed |= add
                if drop:
                    await pubsub.unsubscribe(*drop)
                    self._subscribed -= drop
                    for channel in drop:
                        self._last.pop(channel, None)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                log.debug("subscription change failed (%s); the listener resubscribes", exc)

    async def _listener(self) -> None:
        backoff = 0.1
        first = True
        while True:
            if not self.connected:
                await self._up.wait()
            pubsub = self._sub_redis.pubsub()
            try:
                channels = set(self._wanted)
                await self._bounded(pubsub.subscribe(*channels), self.io_timeout)
                self._pubsub = pubsub
                self._subscribed = channels
                self._subs_changed.set()
                if not first:
                    self.stats.reconnects += 1
                    await self._bounded(self._load_interest(), self.timeout)
                first = False
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    kind = message.get("type")
                    if kind == "message":
                        self._on_message(_text(message["channel"]), message["data"])
                    elif kind == "subscribe":
                        self._subscribed_to(_text(message["channel"]))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                log.warning("cluster listener lost its connection (%s); resubscribing", _why(exc))
            finally:
                self._pubsub = None
                self._subscribed = set()
                await _quietly(pubsub.aclose())
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _on_message(self, channel: str, data: Any) -> None:
        stats = self.stats
        if not isinstance(data, bytes | bytearray):
            stats.junk += 1
            return
        try:
            e = env.unpack(bytes(data))
            if e.origin == self.node_id:
                return  # our own broadcast, already delivered locally
            stats.received += 1
            if e.seq:
                self._track(channel, e)
            self._dispatch(channel, e)
        except env.EnvelopeError as exc:
            stats.junk += 1
            if stats.junk <= 10 or stats.junk % 1000 == 0:
                log.warning("junk on cluster channel %s (%d so far): %s", channel, stats.junk, exc)
        except Exception:
            log.exception("failed to handle an envelope on %s", channel)

    def _track(self, channel: str, e: env.Envelope) -> None:
        seen = self._last.setdefault(channel, {})
        last = seen.get(e.origin)
        if last is not None:
            epoch, seq = last
            if epoch != e.epoch or e.seq != seq + 1:
                self.stats.gaps += 1
        seen[e.origin] = (e.epoch, e.seq)

    def _dispatch(self, channel: str, e: env.Envelope) -> None:
        kind = e.kind
        if kind is env.Kind.GROUP:
            if not channel.startswith(self._group_prefix):
                raise env.EnvelopeError("group envelope on a non-group channel")
            self._check_frame(e.body)
            group = self.server._groups.get(channel[len(self._group_prefix) :])
            if group is not None:
                group.deliver(e.body)
        elif kind is env.Kind.PUSH:
            key, frame = env.unpack_key(e.body)
            self._check_frame(frame)
            self.server.bindings.deliver(key, frame)
        elif kind is env.Kind.KICK:
            key, epoch, reply_to = env.unpack_kick(e.body)
            self._spawn(self._release(key, epoch, reply_to))
        elif kind is env.Kind.RELEASED:
            key, epoch = env.unpack_released(e.body)
            waiter = self._waiters.get((key, epoch))
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind is env.Kind.INTEREST:
            joined, node, group_name = env.unpack_interest(e.body)
            if node == self.node_id:
                return
            if joined:
                self.interest.setdefault(group_name, set()).add(node)
            else:
                self._forget_interest(group_name, node)

    def _forget_interest(self, group: str, node: str) -> None:
        nodes = self.interest.get(group)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del self.interest[group]

    def _check_frame(self, frame: bytes) -> None:
        """A frame from the bus must be one whole TLV frame of a known message."""
        if len(frame) < 8:
            raise env.EnvelopeError("frame shorter than a TLV header")
        msg_id = int.from_bytes(frame[:4], "big")
        if int.from_bytes(frame[4:8], "big") != len(frame) - 8:
            raise env.EnvelopeError("TLV length does not match the frame")
        if msg_id not in self.server.catalog:
            raise env.EnvelopeError(f"unknown message id {msg_id} in a frame")

    async def _release(self, key: str, epoch: int, reply_to: str) -> None:
        try:
            await self.server.bindings.release_for(key, epoch)
        finally:
            self._publish(
                f"{self.prefix}:to:{reply_to}", env.Kind.RELEASED, env.pack_released(key, epoch)
            )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _quietly(coro: Any) -> None:
    try:
        await asyncio.wait_for(coro, 2.0)
    except BaseException:  # closing a connection that is already broken
        pass
