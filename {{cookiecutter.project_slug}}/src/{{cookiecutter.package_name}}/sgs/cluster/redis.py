"""The cluster over Redis: one node, composed of units with one job each.

- :mod:`.bus`: the **ordered command bus** (every command and publish of the
  node, in one bounded queue, as pipelines on one connection);
- :mod:`.listener`: the **subscriber** (channels follow local membership; a
  PING health check with a timeout and TCP keepalive, so it never goes deaf
  quietly);
- :mod:`.membership`: **group membership** (mirror local members; resync the
  whole truth after anything that could have lost a change);
- :mod:`.ownership`: **bindings** (bind, unbind, and the periodic and
  on-reconnect validation of every binding held here);
- :mod:`.keeper`: the **lease keeper and reaper** (and the broker's run id,
  which tells when Redis lost its data);
- :mod:`.dispatch`: **envelope dispatch** (parse, count, route).

This class wires them and runs the keeper loop: refresh the lease about once
a second, validate bindings every half lease, reap dead nodes, and after any
failure reconnect with backoff and jitter and re-register everything this
node holds. Local play never waits for any of it: a broadcast writes to the
local members first, and a handler's await on the broker is bounded by
``cluster_timeout``, after which it gets this node's own view. A login is the
one exception: its bind must be confirmed by the broker, or it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..settings import mask_url
from . import envelope as env
from .base import BindResult, Cluster, EpochClock
from .bus import BROKER_ERRORS, Abandoner, ClusterDown, CommandBus, text, why
from .dispatch import Dispatch, Handlers
from .keeper import LeaseKeeper
from .keys import Keys
from .listener import Listener, quietly
from .membership import Membership
from .ownership import Ownership
from .stall import StallGuard

if TYPE_CHECKING:
    from ..framework import Server
    from ..group import Group
    from ..link import Link

log = logging.getLogger("sgs.cluster")

BACKOFF_MAX = 5.0
#: Lease keeper rounds between prunings of the per-origin sequence table.
PRUNE_EVERY = 30


class RedisCluster(Cluster):
    """A cluster node over one Redis server (see the module docstring)."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        s = server.settings
        self.url = s.cluster_url
        self.keys = k = Keys(s.cluster_prefix)
        self.prefix = k.prefix
        self.lease_ms = int(s.cluster_lease * 1000)
        self.timeout = s.cluster_timeout
        # The bus, the keeper and the listener give the broker up to a lease
        # before declaring it lost: a node whose own loop is saturated (a
        # room flood) reads answers late without the broker being gone.
        self.io_timeout = max(s.cluster_timeout, s.cluster_lease)
        self.heartbeat = min(1.0, s.cluster_lease / 5)
        self.validate_every = s.cluster_lease / 2
        self.backoff_max = min(BACKOFF_MAX, max(0.2, s.cluster_lease / 3))
        epoch_ttl_ms = max(10 * self.lease_ms, 60_000)
        self.clock = EpochClock()
        self.node_epoch = 0
        #: This process's incarnation: links are named ``<incarnation>.<id>``,
        #: so a restart under the same node_id never matches older links.
        self.incarnation = os.urandom(4).hex()
        self.run_id: str | None = None  # the broker's run this node registered in
        self._post_loss_run: str | None = None
        self._origin = self.node_id.encode("ascii")
        self._seq: dict[str, int] = {}  # the next sequence number per channel published on
        self._seq_seen: dict[str, int] = {}  # _seq at the last pruning: unchanged means idle
        self._up = asyncio.Event()
        self._lease_ok = False
        self._stopping = False
        self._register_needed = False
        self._waiters: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._lead_local: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._down_logged = False
        self._abandon = Abandoner()
        self._nudged = asyncio.Event()  # a stalled request asks the keeper for a round now
        self.stall = StallGuard(s.cluster_lease, self._nudged.set)
        self._redis = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.io_timeout,
            socket_connect_timeout=self.timeout,
            socket_keepalive=True,
            health_check_interval=max(1, int(s.cluster_lease)),
            # No retries inside the client: a retried PUBLISH could deliver
            # twice (at most once is the contract), and the keeper reconnects.
            retry=Retry(NoBackoff(), 0),
        )
        self._sub_redis = aioredis.Redis.from_url(
            self.url,
            socket_timeout=None,  # the listener's own PING check bounds every read
            socket_connect_timeout=self.timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        self.bus = CommandBus(
            self._redis,
            limit=s.cluster_publish_queue,
            timeout=self.timeout,
            io_timeout=self.io_timeout,
            on_failure=self._broker_failed,
            stats=self.stats,
            bounded=self._abandon,
        )
        self.listener = Listener(
            self._sub_redis,
            channels={k.ctl, k.to(self.node_id)},
            heartbeat=self.heartbeat,
            io_timeout=self.io_timeout,
            up=self._up,
            on_message=self._on_message,
            on_subscribed=self._on_subscribed,
            on_subscribed_all=self._on_subscribed_all,
            bounded=self._abandon,
        )
        self.membership = Membership(
            keys=k,
            node_id=self.node_id,
            incarnation=self.incarnation,
            bus=self.bus,
            groups=server.group_table.by_name,
            want=self.listener.want,
            node_epoch=lambda: self.node_epoch,
            timeout=self.timeout,
        )
        self.ownership = Ownership(
            keys=k,
            node_id=self.node_id,
            incarnation=self.incarnation,
            bus=self.bus,
            clock=self.clock,
            bindings=lambda: self.server.bindings,
            lease_ms=self.lease_ms,
            epoch_ttl_ms=epoch_ttl_ms,
            run_id=lambda: self.run_id,
            run_seen=self._run_seen,
        )
        self.keeper = LeaseKeeper(
            keys=k,
            node_id=self.node_id,
            incarnation=self.incarnation,
            bus=self.bus,
            lease_ms=self.lease_ms,
            epoch_ttl_ms=epoch_ttl_ms,
            on_reaped=self._on_reaped,
        )
        self.dispatch = Dispatch(
            node_id=self.node_id,
            group_prefix=k.group_channel_prefix,
            stats=self.stats,
            handlers=Handlers(
                group=self._deliver_group,
                push=lambda key, frame: self.server.bindings.deliver(key, frame),
                kick=lambda key, epoch, node: self._spawn(self._release(key, epoch, node)),
                released=self._released,
                interest=self.membership.on_interest,
                known_message=lambda msg_id: msg_id in self.server.catalog,
                room=self._room_op,
                resume=self._resume_op,
            ),
        )

    @property
    def interest(self) -> dict[str, set[str]]:
        """Other nodes with members, per group (read by tests and metrics)."""
        return self.membership.interest

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        self._spawn(self.bus.writer())
        sent_at = asyncio.get_running_loop().time()
        try:
            await self._abandon.bounded(self._register(fresh=True), self.io_timeout)
        except (*BROKER_ERRORS, ClusterDown) as exc:
            log.error(
                "cluster_url %s cannot be reached (%s); logins are refused until it can",
                mask_url(self.url),
                why(exc),
            )
            self._set_up(False)
            self._down_logged = True
        else:
            self._set_up(True)
            self.stall.renewed(sent_at)
            log.info(
                "cluster node %s (incarnation %s) joined %s (lease %.1fs)",
                self.node_id,
                self.incarnation,
                mask_url(self.url),
                self.lease_ms / 1000,
            )
        for coro in (self.listener.run(), self.listener.sync(), self._keeper()):
            self._spawn(coro)
        # Ready only once subscribed: a node that cannot hear a KICK yet is not.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while self.connected and not self.listener.listening and loop.time() < deadline:
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Leave cleanly: drop this node's bindings, memberships and lease."""
        self._stopping = True
        await self.bus.drain(self.timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        if self.connected:
            try:
                await self._abandon.bounded(
                    self.keeper.reap(self.node_id, force=True), self.timeout
                )
                log.info("cluster node %s left", self.node_id)
            except BROKER_ERRORS as exc:
                log.warning("could not deregister (%s): the reaper will", why(exc))
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.cancel()
        await quietly(self._sub_redis.aclose())
        await quietly(self._redis.aclose())

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

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

    @property
    def ready(self) -> tuple[bool, str]:
        if not self.lease_held:
            return False, "the node's cluster lease is lost"
        if not self.listener.listening:
            return False, "the node's cluster subscriber is reconnecting"
        return True, "ready"

    def health(self) -> dict[str, Any]:
        return {
            **super().health(),
            "queued": len(self.bus.queue),
            "epoch": self.node_epoch,
            "incarnation": self.incarnation,
            "listening": self.listener.listening,
            "validations": self.ownership.validations,
            "bindings_lost": self.ownership.lost,
            "binds_refused": self.ownership.refused,
        }

    async def nodes(self) -> list[str]:
        k = self.keys
        try:
            live = await self.bus.call(
                lambda pipe: self.bus.eval(pipe, "LIVE_NODES", [k.nodes], [k.prefix])
            )
        except ClusterDown:
            return [self.node_id]
        return sorted(text(n) for n in live)

    def _set_up(self, up: bool) -> None:
        self.bus.up = up
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
                "cluster broker lost (%s): local play goes on, logins are refused and "
                "cross-node messages are dropped and counted until it is back",
                why(exc),
            )
            self._down_logged = True
        self.bus.fail_all(exc)
        self._set_up(False)

    # -- registration and the broker's run ------------------------------------

    async def _register(self, fresh: bool = False) -> None:
        """(Re-)announce everything this node holds, under a new node epoch.

        Everything goes through the ordered bus once the lease is taken, so
        the node's own later changes land after this whole truth, not beside it.
        """
        self.node_epoch = self.clock.next()
        if fresh:
            # A previous incarnation under this node_id (restarted within its
            # lease) left bindings and members whose links are gone: drop them.
            await self.keeper.reap(self.node_id, force=True)
        run = await self.keeper.take(self.node_epoch, _new_id())
        self._check_run(run)
        self._register_needed = False
        self.bus.up = True
        await self.membership.resync()
        await self.ownership.validate()
        await self.membership.load_interest()

    def _check_run(self, run: str) -> bool:
        """Compare the broker's run id with this node's; True when its data was lost."""
        if self.run_id is None:
            self.run_id = run
            return False
        if run == self.run_id:
            return False
        self.run_id = run
        self._post_loss_run = run
        self.stats.broker_resets += 1
        self.ownership.recovering = True
        self._register_needed = True
        written = self.server.store.write_back()
        log.warning(
            "the cluster broker lost its data (new run %s): node %s re-registers and "
            "writes back the %d player states it holds",
            run,
            self.node_id,
            written,
        )
        return True

    def _run_seen(self, run: str) -> bool:
        """BIND saw ``run``: True while it is a run that began with a data loss."""
        self._check_run(run)
        return run == self._post_loss_run

    # -- the keeper loop ----------------------------------------------------

    async def _keeper(self) -> None:
        backoff = 0.1
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self.validate_every
        rounds = 0
        while True:
            sent_at = loop.time()
            if not self.connected:
                try:
                    await self._abandon.bounded(self._register(), self.io_timeout)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    self._broker_failed(exc)
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, self.backoff_max)
                    continue
                backoff = 0.1
                self.stats.reconnects += 1
                self._set_up(True)
                self.stall.renewed(sent_at)
                next_check = loop.time() + self.validate_every
                sent_at = loop.time()
            try:
                if await self._abandon.bounded(self._beat(), self.io_timeout):
                    next_check = loop.time() + self.validate_every
                elif loop.time() >= next_check:
                    next_check = loop.time() + self.validate_every
                    await self._abandon.bounded(self._check(rounds), self.io_timeout)
                    rounds += 1
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._broker_failed(exc)
                continue
            # The lease was refreshed (or re-taken) by a round sent at sent_at,
            # and a lost one re-validated every binding: ownership holds till then.
            self.stall.renewed(sent_at)
            await self._rest()

    async def _rest(self) -> None:
        """Sleep a heartbeat, or less when a stalled request asks for a round now."""
        if not self._nudged.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self.heartbeat)
        self._nudged.clear()

    async def _beat(self) -> bool:
        """Refresh the lease and reap; True when the node had to re-register."""
        held, run = await self.keeper.refresh(self.node_epoch)
        if run is not None:
            self._check_run(run)
        again = not held or run is None or self._register_needed
        if again:
            if not held:
                # The lease expired: this node was paused or cut off for longer
                # than cluster_lease, and may have been reaped. Fence: take a
                # new epoch and re-register; bindings a newer login took since
                # are given up (their links get the replaced answer).
                self.stats.fenced += 1
                log.warning(
                    "node %s lost its lease: re-registering under a new epoch", self.node_id
                )
            self._lease_ok = False
            await self._register()
            self._lease_ok = True
        elif self.membership.stale:
            await self.membership.resync()
        await self.keeper.reap_if_leader()
        return again

    async def _check(self, rounds: int) -> None:
        """The periodic check: every binding held here still ours in Redis."""
        await self.ownership.validate()
        if rounds % PRUNE_EVERY == 0:
            live = set(await self.nodes())
            self.dispatch.forget_origins(live)
            self.prune_sequences(live)

    def _on_reaped(self, node: str, groups: list[str]) -> None:
        for name in groups:
            data = self.membership.interest_envelope(False, name, node)
            self.bus.enqueue(lambda pipe, d=data: (pipe.publish(self.keys.ctl, d), 1)[1])
            self.membership.forget(name, node)
        if node != self.node_id:
            self.stats.reaped += 1
            self.dispatch.forget_origin(node)

    # -- the listener's callbacks ---------------------------------------------

    def _on_message(self, channel: str, data: Any) -> None:
        self.dispatch.on_message(channel, data)

    def _on_subscribed(self, channel: str) -> None:
        self.membership.subscribed_to(channel)

    def _on_subscribed_all(self, first: bool) -> None:
        """Subscribed again: check what may have been missed meanwhile."""
        for channel in list(self.dispatch.last):
            if channel not in self.listener.subscribed:
                self.dispatch.forget_channel(channel)
        if first:
            return
        self.stats.reconnects += 1
        self._spawn(self._recheck())

    async def _recheck(self) -> None:
        try:
            await self._abandon.bounded(self.membership.load_interest(), self.io_timeout)
            await self._abandon.bounded(self.ownership.validate(), self.io_timeout)
        except (*BROKER_ERRORS, ClusterDown) as exc:
            log.warning("re-check after resubscribing failed (%s): the keeper retries", why(exc))
            self._register_needed = True

    # -- the ordered publisher ------------------------------------------------

    def prune_sequences(self, live: set[str]) -> int:
        """Forget the sequence of channels idle since the last pruning that nobody hears.

        A group's channel is heard while another node has members in it, a
        node's channel while that node is live. A channel published on again
        later starts over at 1: no receiver tracks it (a node drops its
        entries with the subscription), so no false gap is counted. The
        publisher pays nothing per publish for this. Returns how many went.
        """
        prefix = self.keys.group_channel_prefix
        to = self.keys.to("")
        interest = self.membership.interest
        seen = self._seq_seen
        gone = 0
        for channel, seq in list(self._seq.items()):
            if seen.get(channel) != seq:
                continue  # published on since the last pruning
            if channel.startswith(prefix):
                heard = bool(interest.get(channel[len(prefix) :]))
            else:
                heard = channel.startswith(to) and channel[len(to) :] in live
            if not heard:
                del self._seq[channel]
                gone += 1
        self._seq_seen = dict(self._seq)
        return gone

    def _publish(self, channel: str, kind: env.Kind, body: bytes) -> bool:
        seq = self._seq.get(channel, 0) + 1
        self._seq[channel] = seq  # taken even if dropped: receivers then see the gap
        data = env.pack(kind, self._origin, seq, self.node_epoch, body)
        return self.bus.enqueue(lambda pipe: (pipe.publish(channel, data), 1)[1], None, 1)

    # -- groups -------------------------------------------------------------

    def group_joined(self, group: Group, link: Link, label: str) -> None:
        self.membership.joined(group, link, label)

    def group_left(self, group: Group, link: Link) -> None:
        self.membership.left(group, link)

    def group_publish(self, group: Group, frame: bytes) -> None:
        if self.membership.interest.get(group.name):
            self._publish(self.keys.group_channel(group.name), env.Kind.GROUP, frame)

    def _deliver_group(self, name: str, frame: bytes) -> None:
        group = self.server.group_table.get(name)
        if group is not None:
            group.deliver(frame)

    async def group_size(self, group: Group) -> int:
        try:
            await self.membership.joined_known(group, self.listener.listening)
            return int(await self.bus.call(self.membership.size_command(group)))
        except (ClusterDown, TimeoutError):
            return len(group)

    async def group_labels(self, group: Group) -> list[str]:
        try:
            await self.membership.joined_known(group, self.listener.listening)
            values = await self.bus.call(self.membership.labels_command(group))
        except (ClusterDown, TimeoutError):
            return group.local_labels()
        return [text(v) for v in values]

    # -- bindings -----------------------------------------------------------

    async def bind(self, key: str, link: Link) -> BindResult:
        return await self.ownership.bind(key, link)

    def unbind(self, key: str, link: Link, epoch: int) -> None:
        self.ownership.unbind(key, link, epoch)

    def give_back(self, key: str, link: Link, result: BindResult) -> None:
        self.ownership.give_back(key, link, result)

    async def kick(self, key: str, epoch: int, node: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters[(key, epoch)] = waiter
        try:
            body = env.pack_kick(key, epoch, self.node_id)
            if not self._publish(self.keys.to(node), env.Kind.KICK, body):
                return False
            await asyncio.wait_for(waiter, timeout)
            return True
        except (TimeoutError, asyncio.CancelledError):
            return False
        finally:
            self._waiters.pop((key, epoch), None)

    def _released(self, key: str, epoch: int) -> None:
        waiter = self._waiters.get((key, epoch))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _release(self, key: str, epoch: int, reply_to: str) -> None:
        try:
            await self.server.bindings.release_for(key, epoch)
        finally:
            self._publish(self.keys.to(reply_to), env.Kind.RELEASED, env.pack_released(key, epoch))

    async def locate(self, key: str) -> str | None:
        return await self.ownership.locate(key)

    def send_to(self, node: str, key: str, frame: bytes) -> bool:
        return self._publish(self.keys.to(node), env.Kind.PUSH, env.pack_key(key, frame))

    # -- rooms ----------------------------------------------------------------

    def room_send(self, node: str, body: bytes) -> bool:
        return self._publish(self.keys.to(node), env.Kind.ROOM, body)

    def _room_op(self, origin: str, body: bytes) -> None:
        if self.on_room is not None:
            self.on_room(origin, body)

    # -- relayed resumes --------------------------------------------------------

    def resume_send(self, node: str, body: bytes) -> bool:
        return self._publish(self.keys.to(node), env.Kind.RESUME, body)

    def _resume_op(self, origin: str, body: bytes) -> None:
        if self.on_resume is not None:
            self.on_resume(origin, body)

    async def lead(self, name: str) -> int | None:
        keys = [self.keys.lead(name), self.keys.seq(name)]
        args = [self.node_id, str(self.lease_ms)]
        try:
            number = await self.bus.call(lambda pipe: self.bus.eval(pipe, "LEAD", keys, args))
        except ClusterDown:
            number = self._lead_local.get(name, 0) + 1  # alone: lead locally, keep counting
            self._lead_local[name] = number
            return number
        if number is None:
            self._lead_local.pop(name, None)
            return None
        self._lead_local[name] = int(number)
        return int(number)


def _new_id() -> str:
    return os.urandom(8).hex()
