"""The server app: listen, accept links, run hooks and timers, stop gracefully."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import math
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from time import monotonic
from typing import TYPE_CHECKING, Any

from . import liveness
from .agones import Agones, make_agones
from .bindings import Bindings, Player, ReplacedHook
from .builtins import Error, PingReq, PongResp
from .cluster import Cluster, LocalCluster, make_cluster
from .dispatcher import Dispatcher, Wiring
from .group import Group, GroupTable
from .limits import Admission, InboundLimiter
from .limits.admission import address_of
from .link import Link, LinkState
from .message import Catalog, Message, default_catalog
from .metrics import Metrics, TypeMeter, make_metrics
from .outcomes import CloseReason, Outcomes, Stats
from .protocol import get_codec
from .proxy import ProxiedLink, ProxyGate, TrustedProxies
from .resume import Resumer
from .router import Router
from .settings import ServerSettings
from .store import PlayerStore, make_store
from .tls import server_context

if TYPE_CHECKING:
    from .transport import WsServer

log = logging.getLogger("sgs.server")

Hook = Callable[..., Awaitable[None] | None]


class Timer:
    """A callback run on a logic worker, once or at a fixed rate."""

    def __init__(
        self,
        delay: float,
        fn: Callable[[], Any],
        repeat: bool,
        worker: int,
        post: Callable[[int, Callable[[], Any]], None],
        forget: Callable[[Timer], None],
    ) -> None:
        """``post(worker, fn)`` runs ``fn`` on a logic worker; ``forget(timer)`` is called when
        it will not fire again (the server's narrow callbacks, not the server itself)."""
        if delay <= 0 and repeat:
            raise ValueError("a repeating timer needs a positive interval")
        self.post = post
        self.forget = forget
        self.delay = delay
        self.fn = fn
        self.repeat = repeat
        self.worker = worker
        self.cancelled = False
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = 0.0
        try:
            self.arm(asyncio.get_running_loop())
        except RuntimeError:
            pass  # created before the loop runs (app setup): Server.start arms it

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None or self.cancelled:
            return
        self._loop = loop
        self._next = loop.time() + self.delay
        self._handle = loop.call_at(self._next, self._fire)

    def _fire(self) -> None:
        if self.cancelled or self._loop is None:
            return
        self.post(self.worker, self.fn)
        if self.repeat:
            now = self._loop.time()
            self._next += self.delay
            if self._next <= now:  # a stalled loop skips ticks instead of bursting
                self._next = now + self.delay
            self._handle = self._loop.call_at(self._next, self._fire)
        else:
            self.forget(self)

    def cancel(self) -> None:
        self.cancelled = True
        if self._handle is not None:
            self._handle.cancel()
        self.forget(self)


class Server:
    """A game server: the router's handlers served under one resource model."""

    def __init__(
        self,
        settings: ServerSettings | None = None,
        router: Router | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.settings = settings if settings is not None else ServerSettings()
        self.router = router if router is not None else Router()
        self.catalog = catalog if catalog is not None else default_catalog
        for builtin in (PingReq, PongResp, Error):
            self.catalog.add(builtin)
        self.codec = get_codec(self.settings.protocol, self.catalog)
        self.links: dict[int, Link] = {}
        self.stats = Stats()
        #: Every refusal, Error answer, time-out, throttle and close goes through here.
        self.outcomes = Outcomes(self.settings, self.codec, self.stats)
        self.state: dict[str, Any] = {}  # game state that belongs to this server instance
        self.port: int | None = None
        #: This node's groups by name, and the cluster to tell of their changes.
        self.group_table = GroupTable()
        self._timers: set[Timer] = set()
        self._hooks: dict[str, list[Hook]] = {
            "start": [],
            "stop": [],
            "connect": [],
            "disconnect": [],
        }
        self._ids = itertools.count(1)
        self._table: dict[int, Any] = {}
        self._dispatcher: Dispatcher | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._ws: WsServer | None = None  # the WebSocket listener (ws_port), if enabled
        self.ws_port: int | None = None  # its bound port after start
        self._sweeper: asyncio.TimerHandle | None = None
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        # Beyond one process: who else serves this game, and where players live.
        self.cluster: Cluster = LocalCluster(self)
        self.bindings = Bindings(self)
        self.resumer = Resumer(self)
        self.store = make_store(self.settings)
        self._durable: PlayerStore | None = None  # the store, when replies wait for commits
        self._heartbeat: liveness.Heartbeat | None = None  # serve --workers only
        s = self.settings
        self._admission = (
            Admission(s.max_connections_per_ip, s.accept_rate, s.accept_burst, monotonic())
            if s.max_connections_per_ip or s.accept_rate
            else None
        )
        self._inbound_limits = (
            (s.rate_limit_messages, s.rate_limit_messages_burst) if s.rate_limit_messages else None,
            (s.rate_limit_bytes, s.rate_limit_bytes_burst) if s.rate_limit_bytes else None,
        )
        # Behind a load balancer: whose PROXY header or X-Forwarded-For names the client.
        self.trusted_proxies = TrustedProxies(s.trusted_proxies) if s.trusted_proxies else None
        self.proxies = (
            ProxyGate(self.trusted_proxies, self.refuse_connection)
            if s.proxy_protocol and self.trusted_proxies is not None
            else None
        )
        # /metrics, /healthz, /readyz: a no-op when metrics_port is 0.
        self.metrics: Metrics = make_metrics(self)
        # The Agones SDK sidecar (agones = true): Ready, Health, Shutdown; a no-op otherwise.
        self.agones: Agones = make_agones(self)

    # -- hooks --------------------------------------------------------------

    def on_start(self, fn: Hook) -> Hook:
        self._hooks["start"].append(fn)
        return fn

    def on_stop(self, fn: Hook) -> Hook:
        self._hooks["stop"].append(fn)
        return fn

    def on_connect(self, fn: Hook) -> Hook:
        self._hooks["connect"].append(fn)
        return fn

    def on_disconnect(self, fn: Hook) -> Hook:
        self._hooks["disconnect"].append(fn)
        return fn

    async def _connected(self, link: Link) -> None:
        """Run on the link's worker before its first message (the dispatcher's callback)."""
        await self._run_hooks("connect", link)

    async def _run_hooks(self, name: str, arg: Any) -> None:
        for hook in self._hooks[name]:
            try:
                result = hook(arg)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s hook %r raised", name, hook)

    # -- lifecycle ----------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return (self.settings.host, self.port or self.settings.port)

    @property
    def dispatcher(self) -> Dispatcher | None:
        """The workers of the resource model, once serving (read-only: metrics read it)."""
        return self._dispatcher

    @property
    def meters(self) -> list[TypeMeter]:
        """One meter per routed message type, once serving (the metrics collector reads them)."""
        return [entry[3] for entry in self._table.values()]

    @property
    def is_serving(self) -> bool:
        return self._listener is not None and not self._stopping

    @property
    def draining(self) -> bool:
        """A graceful stop has begun (readiness turns False at once)."""
        return self._stopping

    async def start(self) -> None:
        """Bind and serve in the background; ``port`` holds the bound port after this."""
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await self.metrics.start()  # a taken metrics_port stops here, before anything else
        try:
            await self._start_serving(loop)
        except BaseException:
            await self.metrics.stop()
            raise
        # serve --workers: tell the supervisor this loop turns (it kills a hung worker).
        self._heartbeat = liveness.from_environment()
        if self._heartbeat is not None:
            self._heartbeat.start()

    async def _start_serving(self, loop: asyncio.AbstractEventLoop) -> None:
        await self.store.start()  # a bad store_url stops here, before any port is bound
        self._durable = self.store if self.store.sync_always else None
        self.store.on_fenced = self.bindings.fenced  # a refused write: its link is replaced
        codec = self.codec
        # One tuple per message id, unpacked once per message by the worker:
        # (type, decoder, composed call, meter, the call gives a coroutine,
        # the frame encoder chosen for the declared reply type).
        table = {
            msg_id: (
                msg_type,
                codec.fast_decoder(msg_type),
                route.call,
                TypeMeter(msg_type.__name__, msg_id, route.slow),
                route.is_async,
                codec.frame_encoder(msg_type.__reply__),
            )
            for msg_id, (msg_type, route) in self.router.compile(self.settings).items()
        }
        self._table = table
        wiring = Wiring(
            table=table,
            durable=self._durable,
            # Metrics on, or a route asked for slow-handler warnings (timing_middleware).
            timed=self.metrics.enabled or any(entry[3].slow < math.inf for entry in table.values()),
            connected=self._connected,
            finalize=self.finalize,
        )
        self._dispatcher = Dispatcher(self, wiring)
        self._dispatcher.start()
        self.cluster = make_cluster(self)
        await self.cluster.start()
        self.group_table.remote = None if self.cluster.is_local else self.cluster
        self._dispatcher.set_stall(self.cluster.stall)
        await self._run_hooks("start", self)
        s = self.settings
        tls = server_context(s)
        if s.ws_port:  # before TCP: once the TCP port answers, both are served
            from .transport import start_ws  # picows loads only when WebSocket is on

            self._ws = await start_ws(self, tls)
            self.ws_port = self._ws.port
        link_type = Link if self.proxies is None else ProxiedLink
        try:
            self._listener = await loop.create_server(
                lambda: link_type(self),
                s.host,
                s.port,
                backlog=s.backlog,
                reuse_address=True,
                reuse_port=s.reuse_port or None,  # serve --workers: processes share the port
                ssl=tls,
                ssl_handshake_timeout=s.tls_handshake_timeout if tls is not None else None,
            )
        except BaseException:
            if self._ws is not None:
                self._ws.close()
            raise
        self.port = self._listener.sockets[0].getsockname()[1]
        if s.idle_timeout > 0 or s.frame_timeout > 0:
            self._schedule_sweep()
        for timer in list(self._timers):
            timer.arm(loop)
        log.info(
            "listening on %s:%d%s (protocol=%s, resource_model=%s, logic_workers=%d, "
            "send_workers=%d)",
            s.host,
            self.port,
            " with TLS" if tls is not None else "",
            s.protocol,
            s.resource_model.value,
            s.logic_workers,
            s.send_workers,
        )
        await self.agones.start()  # Ready once both listeners take players

    async def serve_forever(self) -> None:
        if self._listener is None:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def stop(self, reason: CloseReason = CloseReason.SERVER_SHUTDOWN) -> None:
        """Graceful stop: no new links, finish received work, flush, close, cancel."""
        if self._stopping or self._listener is None:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self._stopping = True
        loop = asyncio.get_running_loop()
        s = self.settings
        deadline = loop.time() + s.drain_timeout
        log.info("graceful stop: %d links, drain timeout %.1fs", len(self.links), s.drain_timeout)
        self._listener.close()
        if self._ws is not None:
            self._ws.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.resumer.close_all()
        for link in list(self.links.values()):
            link.stop_reading()
        dispatcher = self._dispatcher
        assert dispatcher is not None
        drained = await dispatcher.drain(deadline)
        for timer in list(self._timers):
            timer.cancel()
        await self._run_hooks("stop", self)
        for link in list(self.links.values()):
            link.close(reason)
        while self.links and loop.time() < deadline:
            await asyncio.sleep(0.005)
        left = len(self.links)
        for link in list(self.links.values()):
            link.abort()
        # Player state is flushed before the node leaves the cluster, so a
        # login elsewhere right after finds it.
        await self.bindings.settle(max(0.5, deadline - loop.time()))
        await self.store.stop(max(1.0, deadline - loop.time()))
        await self.cluster.stop()
        self.group_table.remote = None
        dispatcher.set_stall(None)
        await dispatcher.stop(timeout=max(0.5, deadline - loop.time()))
        self._listener = None
        if not drained or left:
            log.warning("drain timeout: %d links aborted", left)
        log.info("stopped")
        await self.agones.stop()  # Shutdown: the drain is over, Agones may delete the pod
        await self.metrics.stop()  # /healthz answers until the very end
        assert self._stopped is not None
        self._stopped.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT, then stop gracefully; the process exit code."""
        return run_server(self)

    # -- links --------------------------------------------------------------

    def accept(self, link: Link) -> None:
        """A transport made ``link`` (its ``connection_made``): admit it, or refuse it."""
        if self._stopping or len(self.links) >= self.settings.max_connections:
            self.outcomes.refuse(link, "shutting_down" if self._stopping else "full")
            return
        admission = self._admission
        if admission is not None:
            address = address_of(link.peer)
            why = admission.refuse(address, monotonic())
            if why is not None:
                self.outcomes.refuse(link, why, f"from {address}")
                return
            link.address = address
        messages, bytes_ = self._inbound_limits
        if messages or bytes_:
            link.reader.limiter = InboundLimiter(monotonic(), messages, bytes_)
        link.id = next(self._ids)
        link.state = LinkState.OPEN
        self.links[link.id] = link
        self.stats.accepted += 1
        assert self._dispatcher is not None
        self._dispatcher.attach(link)
        if self._hooks["connect"]:
            # In the received queue, so the hook runs before the link's first message.
            link.worker.post_connected(link)  # type: ignore[union-attr]
        log.debug(
            "link %d open from %s",
            link.id,
            link.peer,
            extra={"link_id": link.id, "peer": link.peer},
        )

    def refuse_connection(self, transport: Any, peer: Any, why: str, detail: str) -> None:
        """Abort a connection refused before it became a link (its PROXY header), counted."""
        self.outcomes.refuse_transport(transport, peer, why, detail)

    def link_lost(self, link: Link) -> None:
        """The transport is gone; per-link writers may end."""
        if self._dispatcher is not None and link.finalized:
            self._dispatcher.detach(link)

    async def finalize(self, link: Link) -> None:
        """Run on the link's worker after all its received messages: drop its state."""
        if link.finalized or self.resumer.intercept(link):
            return
        link.finalized = True
        if link.state is LinkState.OPEN:
            link.close(CloseReason.REMOTE)
        for name in list(link.groups):
            group = self.group_table.get(name)
            if group is not None:
                group.discard(link)
        self.links.pop(link.id, None)
        if link.address and self._admission is not None:
            self._admission.release(link.address)
            link.address = ""
        self.outcomes.closed(link)
        await self._run_hooks("disconnect", link)
        self.bindings.link_closed(link)
        if self._dispatcher is not None:
            self._dispatcher.detach(link)

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        timeouts = [t for t in (s.idle_timeout, s.frame_timeout) if t > 0]
        interval = min(max(min(timeouts) / 4, 0.02), 5.0)
        self._sweeper = loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Close links idle past idle_timeout, or stuck inside one frame past frame_timeout."""
        now = asyncio.get_running_loop().time()
        timeout = self.settings.idle_timeout
        frame_timeout = self.settings.frame_timeout
        for link in list(self.links.values()):
            if link.state is not LinkState.OPEN:
                continue
            if link.seen:  # a frame completed since the last sweep
                link.seen = False
                link.last_seen = now
                link.partial_since = 0.0
            elif link.last_seen == 0.0:
                link.last_seen = now
            elif timeout > 0 and now - link.last_seen > timeout:
                self.outcomes.time_out(
                    link,
                    CloseReason.IDLE_TIMEOUT,
                    f"no message within idle_timeout ({timeout:g}s)",
                    now - link.last_seen,
                )
                continue
            if frame_timeout > 0:
                self._check_partial_frame(link, now, frame_timeout)
        if not self._stopping:
            self._schedule_sweep()

    def _check_partial_frame(self, link: Link, now: float, frame_timeout: float) -> None:
        """Slowloris: a frame started and never finished (the header came, the value trickles)."""
        if not link.reader.pending:
            link.partial_since = 0.0
        elif link.partial_since == 0.0:
            link.partial_since = now
        elif now - link.partial_since > frame_timeout:
            self.outcomes.time_out(
                link,
                CloseReason.FRAME_TIMEOUT,
                f"a frame did not arrive whole within frame_timeout ({frame_timeout:g}s)",
                now - link.partial_since,
            )

    # -- groups, pushes, timers --------------------------------------------

    def group(self, name: str) -> Group:
        """The group called ``name``, created on first use, dropped when empty."""
        group = self.group_table.get(name)
        if group is None:
            group = Group(name, self)
            self.group_table.adopt(group)
        return group

    @property
    def groups(self) -> dict[str, Group]:
        return dict(self.group_table.by_name)

    def push(self, msg: Message, to: Link | Group | Iterable[Link]) -> int:
        """Send ``msg`` to a link, a group or several links, encoding it once."""
        if isinstance(to, Link):
            return int(to.send(msg))
        if isinstance(to, Group):
            return to.broadcast(msg)
        frame = self.codec.encode_frame(msg)
        return sum(1 for link in to if link.write_frame(frame))

    def broadcast(self, msg: Message) -> int:
        """Send ``msg`` to every open link of this node."""
        return self.push(msg, list(self.links.values()))

    # -- bindings: one link per key (account) in the whole cluster ----------

    async def bind(self, link: Link, key: str) -> Player:
        """Make ``link`` the one holder of ``key`` cluster-wide; returns the player and state.

        An older link holding ``key`` (on any node) is replaced: its node runs
        the ``on_replaced`` hooks and flushes the state before this returns.
        """
        return await self.bindings.bind(link, key)

    def unbind(self, link: Link) -> Player | None:
        """End ``link``'s binding (logout); its state is flushed, then the key freed."""
        return self.bindings.unbind(link)

    def player_of(self, link: Link) -> Player | None:
        """The binding ``link`` holds on this node, if any."""
        return self.bindings.player_of(link)

    async def push_to(self, key: str, msg: Message) -> bool:
        """Send ``msg`` to the link bound to ``key``, on whichever node holds it."""
        return await self.bindings.push_to(key, msg)

    def on_replaced(self, fn: ReplacedHook) -> ReplacedHook:
        """``async def fn(link, key)``: a newer login of ``key`` replaced ``link``.

        Runs on the node holding ``link``, on its logic worker. Without any
        hook the link is simply closed.
        """
        return self.bindings.on_replaced(fn)

    def every(self, interval: float, fn: Callable[[], Any], worker: int = 0) -> Timer:
        """Run ``fn`` every ``interval`` seconds on logic worker ``worker``."""
        timer = Timer(interval, fn, True, worker, self._post_to, self._timers.discard)
        self._timers.add(timer)
        return timer

    def after(self, delay: float, fn: Callable[[], Any], worker: int = 0) -> Timer:
        """Run ``fn`` once after ``delay`` seconds on logic worker ``worker``."""
        timer = Timer(delay, fn, False, worker, self._post_to, self._timers.discard)
        self._timers.add(timer)
        return timer

    def _post_to(self, worker: int, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on logic worker ``worker`` (timers fire through this)."""
        if self._dispatcher is not None:
            self._dispatcher.worker_for(worker).post_active(fn)

    def post(self, fn: Callable[[], Any], link: Link | None = None) -> None:
        """Run ``fn`` on ``link``'s logic worker (or worker 0) as an active push."""
        if link is not None and link.worker is not None:
            link.worker.post_active(fn)
        elif self._dispatcher is not None:
            self._dispatcher.worker_for(0).post_active(fn)


def new_event_loop(loop_name: str = "uvloop") -> asyncio.AbstractEventLoop:
    """uvloop when asked for and installed, the standard loop otherwise."""
    if loop_name == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; using the asyncio event loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_server(server: Server) -> int:
    """Serve until SIGTERM/SIGINT; returns 0 after a graceful stop."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(server.settings.loop)) as runner:
        return runner.run(_serve_until_signal(server))


async def _serve_until_signal(server: Server) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = [signal.SIGINT, signal.SIGTERM]
    installed: list[signal.Signals] = []
    for sig in signals:
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            try:
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
            except ValueError:
                pass
    await server.start()
    if sys.platform == "win32":  # pragma: no cover - wake up to notice Ctrl-C
        while not stop.is_set():
            await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=0.5)
    else:
        await stop.wait()
    await server.stop()
    for sig in installed:
        loop.remove_signal_handler(sig)
    return 0
