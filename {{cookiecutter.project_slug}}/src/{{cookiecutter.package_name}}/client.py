"""GameClient, the typed client of the sample game, and the robot swarm.

``GameClient`` wraps the framework's :class:`~.sgs.Client` with one method
per request of the catalogue, so other projects and the tests talk to the
server in game terms. ``run_robots`` is the go-sgs "sg-robot": many clients
log in, do verified business requests, chat in a room and log out, and the
report says how fast and whether anything went wrong.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from ssl import SSLContext
from types import TracebackType
from typing import Any, TypeVar

from .messages import (
    ArenaState,
    BusinessReq,
    BusinessResp,
    CreateRoom,
    EchoReq,
    Error,
    JoinById,
    JoinOrCreate,
    JoinRoomReq,
    JoinRoomResp,
    LeaveRoom,
    LeaveRoomReq,
    LeaveRoomResp,
    ListRooms,
    LoginReq,
    LogoutReq,
    MoveReq,
    PingReq,
    PongResp,
    RoomClosed,
    RoomInfo,
    RoomJoined,
    RoomLeft,
    RoomMessage,
    RoomTick,
    SayReq,
    User,
    catalog,
)
from .sgs import Catalog, Client, RemoteError
from .sgs.rooms.room import dump_object

__all__ = ["GameClient", "RobotReport", "run_arena_robots", "run_robots"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Callback = Callable[[T], Awaitable[None] | None]

DEFAULT_TIMEOUT = 5.0


class GameClient:
    """One player's connection: typed requests and push callbacks.

    Use it as ``async with GameClient(host, port) as c: await c.login("alice")``.
    Requests raise :class:`~.sgs.RemoteError` when the server answers Error.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6666,
        *,
        protocol: str = "json",
        timeout: float = DEFAULT_TIMEOUT,
        catalog: Catalog = catalog,
        ssl: SSLContext | None = None,
        resume: int = 0,
    ) -> None:
        """``resume`` > 0: arm session resumption at login; a drop is then resumed
        automatically, with that many connection attempts at most. When the
        server has no session left to resume (its window passed, the node that
        held it died, the server restarted), the client logs in again as the
        same account and reports ``recovered=False``: the LoginResp it gets is
        the fresh snapshot."""
        self.resume = resume
        self.host = host
        self.port = port
        self.protocol = protocol
        self.timeout = timeout
        self.account_id: str | None = None
        self._client = Client(
            host, port, protocol=protocol, catalog=catalog, connect_timeout=timeout, ssl=ssl
        )
        self._resumed: list[Callable[[bool | None], Any]] = []
        self.last_user: User | None = None  # the newest LoginResp: a re-login's snapshot
        if resume:
            self._client.on_resumed(self._after_resume)

    # -- connection ---------------------------------------------------------

    async def connect(self) -> GameClient:
        """Open the connection (``connect_timeout`` is ``timeout``)."""
        await self._client.connect()
        return self

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        await self._client.close()

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the connection is closed (by either side); None waits forever."""
        await asyncio.wait_for(self._client.wait_closed(), timeout)

    @property
    def closed(self) -> bool:
        return self._client.closed.is_set()

    async def __aenter__(self) -> GameClient:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- requests -----------------------------------------------------------

    async def login(self, account_id: str) -> User:
        """Log in as ``account_id``; returns the user with its current counter."""
        resp = await self._client.request(LoginReq(account_id=account_id), timeout=self.timeout)
        self.account_id = resp.user.account_id
        self.last_user = resp.user
        if self.resume:
            self._client.arm_resume(self.resume)
        return resp.user

    async def business(self, key: int, value1: int, value2: int) -> BusinessResp:
        """The go-sgs business request: the server answers ``value1 + value2`` under ``key``."""
        return await self._client.request(
            BusinessReq(key=key, value1=value1, value2=value2), timeout=self.timeout
        )

    async def echo(self, text: str) -> str:
        resp = await self._client.request(EchoReq(text=text), timeout=self.timeout)
        return resp.text

    async def ping(self) -> PongResp:
        """Ping with the local time; the pong carries it back plus the server's time."""
        return await self._client.request(PingReq(client_time_ms=now_ms()), timeout=self.timeout)

    async def join(self, room: str) -> JoinRoomResp:
        """Join ``room`` (leaving the current one); returns the members' account ids."""
        return await self._client.request(JoinRoomReq(room=room), timeout=self.timeout)

    async def say(self, text: str) -> None:
        """Say ``text`` in the current room; it comes back as a RoomMessage push."""
        await self._client.send(SayReq(text=text))

    async def leave(self) -> LeaveRoomResp:
        return await self._client.request(LeaveRoomReq(), timeout=self.timeout)

    # -- matches (sgs/rooms): ids 18-28 -----------------------------------------

    async def join_or_create(
        self, room_type: str, options: dict | None = None, filters: dict | None = None
    ) -> RoomJoined:
        """A seat in a fitting room of ``room_type`` (metadata matching ``filters``), or a new one."""
        msg = JoinOrCreate(
            room_type=room_type,
            options=dump_object(options or {}),
            filters=dump_object(filters or {}),
        )
        return await self._client.request(msg, timeout=self.timeout)

    async def create_room(self, room_type: str, options: dict | None = None) -> RoomJoined:
        msg = CreateRoom(room_type=room_type, options=dump_object(options or {}))
        return await self._client.request(msg, timeout=self.timeout)

    async def join_by_id(self, room_id: str, options: dict | None = None) -> RoomJoined:
        msg = JoinById(room_id=room_id, options=dump_object(options or {}))
        return await self._client.request(msg, timeout=self.timeout)

    async def leave_room(self) -> RoomLeft:
        """Leave the current match (its room sees ``consented=True``)."""
        return await self._client.request(LeaveRoom(), timeout=self.timeout)

    async def list_rooms(self, room_type: str = "", filters: dict | None = None) -> list[RoomInfo]:
        msg = ListRooms(room_type=room_type, filters=dump_object(filters or {}))
        return (await self._client.request(msg, timeout=self.timeout)).rooms

    async def move(self, direction: str, seq: int = 0) -> None:
        """One arena input; applied at the room's next tick (no reply)."""
        await self._client.send(MoveReq(direction=direction, seq=seq))  # type: ignore[arg-type]

    def on_arena_state(self, callback: Callback[ArenaState]) -> Callback[ArenaState]:
        """Call ``callback(state)`` for every ArenaState (each arena tick)."""
        self._client.on(ArenaState, callback)
        return callback

    def on_room_closed(self, callback: Callback[RoomClosed]) -> Callback[RoomClosed]:
        """Call ``callback(msg)`` when the match this client is in goes away."""
        self._client.on(RoomClosed, callback)
        return callback

    async def logout(self) -> None:
        """Log out: wait for LogoutResp, then for the server to close the link."""
        self._client.forget_resume()
        await self._client.request(LogoutReq(), timeout=self.timeout)
        self.account_id = None
        await self.wait_closed(self.timeout)

    # -- pushes: the framework client runs sync callbacks in arrival order -----

    def on_resumed(self, callback: Callable[[bool | None], Any]) -> None:
        """``callback(recovered)`` after each automatic resume (see ``resume``).

        True: what was sent meanwhile arrived (as pushes, in order); False: it
        could not be replayed and the game has a fresh snapshot (the server's
        LoginResp and rooms, or the LoginResp of a new login when the session
        was gone: ``last_user``); None: no connection could be made, or the
        new login was refused.
        """
        self._resumed.append(callback)

    async def _after_resume(self, recovered: bool | None) -> None:
        """A resume that found no session logs in afresh, then tells the game."""
        account = self.account_id
        if recovered is None and account is not None and not self.closed:
            try:
                await self.login(account)
                recovered = False
            except (RemoteError, TimeoutError, ConnectionError, OSError) as exc:
                log.info("login after a failed resume refused: %s", exc)
        for callback in self._resumed:
            try:
                result = callback(recovered)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_resumed callback raised")

    def drop(self) -> None:
        """Cut the connection as a lost network does: no logout (robots, tests)."""
        transport = self._client._transport
        if transport is not None:
            transport.abort()

    def on_room_message(self, callback: Callback[RoomMessage]) -> Callback[RoomMessage]:
        """Call ``callback(msg)`` (sync or async) for every RoomMessage pushed to us."""
        self._client.on(RoomMessage, callback)
        return callback

    def on_room_tick(self, callback: Callback[RoomTick]) -> Callback[RoomTick]:
        """Call ``callback(msg)`` (sync or async) for every RoomTick pushed to us."""
        self._client.on(RoomTick, callback)
        return callback

    def on_error(self, callback: Callback[Error]) -> Callback[Error]:
        """Call ``callback(error)`` for an Error that answers no request (a failed SayReq)."""
        self._client.on(Error, callback)
        return callback


def now_ms() -> int:
    """Unix epoch milliseconds, the unit of PingReq/PongResp times."""
    return time.time_ns() // 1_000_000


# -- robots -----------------------------------------------------------------


@dataclass
class RobotReport:
    """What a robot run did; ``ok`` is False on any error or mismatch.

    ``errors`` counts failed robots (a robot stops at its first error, whose
    description lands in ``failures``, the first ten kept); ``requests`` and
    ``latencies`` cover every answered request; ``pushes`` the RoomMessages
    received.
    """

    robots: int
    requests: int = 0
    errors: int = 0
    pushes: int = 0
    drops: int = 0  # connections the robots cut (--drop-rate)
    resumed: int = 0  # of them resumed with recovered=True
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    @property
    def msgs_per_s(self) -> float:
        """Request/reply round trips per second of wall time."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in seconds (nearest rank); 0 when nothing was measured."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    def summary(self) -> str:
        """The human summary the CLI prints."""
        ms = 1000.0
        lines = [
            f"robots     {self.robots}",
            f"requests   {self.requests}",
            f"errors     {self.errors}",
            f"pushes     {self.pushes}",
            *([f"drops      {self.drops} ({self.resumed} resumed)"] if self.drops else []),
            f"elapsed    {self.elapsed:.3f} s",
            f"msgs/s     {self.msgs_per_s:.0f}",
            "latency    "
            + "  ".join(
                f"{name} {self.percentile(p) * ms:.2f} ms"
                for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
            ),
        ]
        lines += [f"failure    {failure}" for failure in self.failures]
        return "\n".join(lines)


class RobotFailure(Exception):
    """A robot saw something the server should not have done."""


@dataclass
class _RobotRoom:
    """The robots sharing one room: who should be heard, and when all have joined."""

    name: str
    members: set[str]
    all_joined: asyncio.Barrier


@dataclass
class _Swarm:
    """One ``run_robots`` call: its parameters and the shared bookkeeping."""

    host: str
    ports: Sequence[int]
    protocol: str
    requests: int
    timeout: float
    fresh_accounts: bool
    report: RobotReport
    progress: Callable[[int], None] | None
    drop_rate: float = 0.0
    max_failures: int = 10

    async def timed(self, request: Awaitable[T]) -> T:
        start = time.perf_counter()
        result = await request
        self.report.latencies.append(time.perf_counter() - start)
        self.report.requests += 1
        if self.progress is not None:
            self.progress(1)
        return result

    def fail(self, robot: str, exc: BaseException) -> None:
        self.report.errors += 1
        if len(self.report.failures) < self.max_failures:
            detail = str(exc) or "no answer in time"
            self.report.failures.append(f"{robot}: {type(exc).__name__}: {detail}")

    async def robot(self, account: str, port: int, room: _RobotRoom, rng: random.Random) -> None:
        """One robot; any failure is recorded and releases its room-mates."""
        try:
            await self._robot_flow(account, port, room, rng)
        except Exception as exc:  # every failure counts, none may stop the swarm
            self.fail(account, exc)
            await room.all_joined.abort()  # room-mates stop waiting for this robot

    async def _robot_flow(
        self, account: str, port: int, room: _RobotRoom, rng: random.Random
    ) -> None:
        heard: dict[str, list[RoomMessage]] = {}
        heard_everyone = asyncio.Event()

        heard_myself = asyncio.Event()

        def on_room_message(msg: RoomMessage) -> None:
            heard.setdefault(msg.sender, []).append(msg)
            self.report.pushes += 1
            if msg.sender == account:
                heard_myself.set()
            if heard.keys() >= room.members:
                heard_everyone.set()

        resumes: asyncio.Queue[bool | None] = asyncio.Queue()
        client = GameClient(
            self.host,
            port,
            protocol=self.protocol,
            timeout=self.timeout,
            resume=5 if self.drop_rate > 0 else 0,
        )

        async def maybe_drop() -> None:
            """With ``drop_rate``: cut the connection, wait for the automatic resume."""
            if self.drop_rate <= 0 or rng.random() >= self.drop_rate:
                return
            self.report.drops += 1
            client.drop()
            recovered = await asyncio.wait_for(resumes.get(), self.timeout * 3)
            if recovered is not True:
                raise RobotFailure(f"a dropped connection resumed with recovered={recovered}")
            self.report.resumed += 1

        async with client:
            client.on_resumed(resumes.put_nowait)
            client.on_room_message(on_room_message)
            user = await self.timed(client.login(account))
            if user.account_id != account or (self.fresh_accounts and user.counter != 0):
                raise RobotFailure(f"login as {account!r} answered {user!r}")
            for _ in range(self.requests):
                key = rng.randrange(1 << 31)
                value1 = rng.randrange(-(1 << 30), 1 << 30)
                value2 = rng.randrange(-(1 << 30), 1 << 30)
                resp = await self.timed(client.business(key, value1, value2))
                if resp.key != key or resp.result != value1 + value2:
                    raise RobotFailure(
                        f"business({key}, {value1}, {value2}) answered"
                        f" key={resp.key} result={resp.result}"
                    )
                await maybe_drop()
            joined = await self.timed(client.join(room.name))
            if joined.room != room.name or account not in joined.members:
                raise RobotFailure(f"join {room.name!r} answered {joined!r}")
            await asyncio.wait_for(room.all_joined.wait(), self.timeout)
            await client.say(f"hello from {account}")
            if self.drop_rate > 0:
                # A cut drops what the socket had not sent yet: resumption replays
                # what the server sent, not what the client wrote. Our own line
                # coming back says it arrived; the others' lines are replayed.
                await asyncio.wait_for(heard_myself.wait(), self.timeout)
            await maybe_drop()  # the lines in flight are replayed, each heard once
            await asyncio.wait_for(heard_everyone.wait(), self.timeout)
            for sender in sorted(room.members):
                expected = [RoomMessage(room=room.name, sender=sender, text=f"hello from {sender}")]
                if heard.get(sender) != expected:
                    raise RobotFailure(f"heard {heard.get(sender)} from {sender}, expected it once")
            await self.timed(client.logout())


async def run_robots(
    host: str = "127.0.0.1",
    port: int | Sequence[int] = 6666,
    *,
    protocol: str = "json",
    robots: int = 10,
    requests: int = 100,
    room_size: int = 10,
    account_prefix: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Callable[[int], None] | None = None,
    seed: int | None = None,
    drop_rate: float = 0.0,
) -> RobotReport:
    """Run ``robots`` robots against the server and report.

    Each robot logs in with a unique account (``<prefix>-<n>``; a random
    prefix unless given, and then the counter must start at 0), sends
    ``requests`` business requests checking every key and result, joins a room
    shared with up to ``room_size`` robots, says one line once every member has
    joined, checks it hears each member's line exactly once, and logs out.
    ``progress(n)`` is called as requests complete (n requests each time).
    With several ports (the nodes of a cluster), robot ``n`` connects to
    ``port[n % len(port)]``, so every room is shared across the nodes.
    ``drop_rate``: after each request and after its line, a robot cuts its
    connection with that probability and must resume with ``recovered=True``
    (the server's ``resume_window`` on); its count and lines stay exact.
    """
    ports = [port] if isinstance(port, int) else list(port)
    prefix = account_prefix or f"robot-{uuid.uuid4().hex[:8]}"
    swarm = _Swarm(
        host=host,
        ports=ports,
        protocol=protocol,
        requests=requests,
        timeout=timeout,
        fresh_accounts=account_prefix is None,
        report=RobotReport(robots=robots),
        progress=progress,
        drop_rate=drop_rate,
    )
    rng = random.Random(seed)
    runs = []
    for first in range(0, robots, room_size):
        accounts = [f"{prefix}-{i}" for i in range(first, min(robots, first + room_size))]
        room = _RobotRoom(
            name=f"{prefix}-room-{first // room_size}",
            members=set(accounts),
            all_joined=asyncio.Barrier(len(accounts)),
        )
        runs += [
            swarm.robot(account, ports[n % len(ports)], room, random.Random(rng.random()))
            for n, account in enumerate(accounts, start=first)
        ]
    start = time.perf_counter()
    await asyncio.gather(*runs)
    swarm.report.elapsed = time.perf_counter() - start
    return swarm.report


# -- arena robots ---------------------------------------------------------------

#: The directions an arena robot walks, in turn.
DIRECTIONS = ("up", "right", "down", "left")


async def run_arena_robots(
    host: str = "127.0.0.1",
    port: int | Sequence[int] = 6666,
    *,
    protocol: str = "json",
    robots: int = 8,
    moves: int = 40,
    rate: float = 20.0,
    account_prefix: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    seed: int | None = None,
) -> RobotReport:
    """Robots that play the arena: ``robots --game arena``.

    Each robot logs in, ``JoinOrCreate("arena")``, sends ``moves`` MoveReq
    (``rate`` a second, numbered from 1), and checks the ArenaStates it
    receives: its own last applied input never goes back and reaches
    ``moves``, and tick numbers follow each other with no gap. Then it leaves
    (RoomLeft) and logs out. With several ports robot ``n`` uses
    ``port[n % len(port)]``, so matches span the nodes.
    """
    ports = [port] if isinstance(port, int) else list(port)
    prefix = account_prefix or f"arena-{uuid.uuid4().hex[:8]}"
    report = RobotReport(robots=robots)
    rng = random.Random(seed)

    async def timed(request: Awaitable[T]) -> T:
        start = time.perf_counter()
        result = await request
        report.latencies.append(time.perf_counter() - start)
        report.requests += 1
        return result

    async def robot(n: int, delay: float) -> None:
        account = f"{prefix}-{n}"
        seen: list[tuple[int, int]] = []  # (tick, my applied seq)
        done = asyncio.Event()

        def on_state(state: ArenaState) -> None:
            report.pushes += 1
            mine = next((p.seq for p in state.players if p.name == account), None)
            if mine is not None:
                seen.append((state.tick, mine))
                if mine >= moves:
                    done.set()

        client = GameClient(host, ports[n % len(ports)], protocol=protocol, timeout=timeout)
        try:
            async with client:
                client.on_arena_state(on_state)
                await timed(client.login(account))
                await asyncio.sleep(delay)
                joined = await timed(client.join_or_create("arena"))
                if joined.room_type != "arena" or joined.clients < 1:
                    raise RobotFailure(f"JoinOrCreate answered {joined!r}")
                for seq in range(1, moves + 1):
                    await client.move(DIRECTIONS[(seq + n) % 4], seq)
                    await asyncio.sleep(1.0 / rate)
                await asyncio.wait_for(done.wait(), timeout)
                ticks = [tick for tick, _ in seen]
                seqs = [seq for _, seq in seen]
                if seqs != sorted(seqs):
                    raise RobotFailure(f"inputs applied out of order: {seqs}")
                if ticks != list(range(ticks[0], ticks[0] + len(ticks))):
                    raise RobotFailure("a tick was missed or reordered")
                left = await timed(client.leave_room())
                if left.room_id != joined.room_id:
                    raise RobotFailure(f"LeaveRoom answered {left!r}")
                await timed(client.logout())
        except Exception as exc:  # every failure counts, none may stop the others
            report.errors += 1
            if len(report.failures) < 10:
                report.failures.append(f"{account}: {type(exc).__name__}: {exc or 'timeout'}")

    start = time.perf_counter()
    await asyncio.gather(*(robot(n, rng.random() * 0.2) for n in range(robots)))
    report.elapsed = time.perf_counter() - start
    return report
