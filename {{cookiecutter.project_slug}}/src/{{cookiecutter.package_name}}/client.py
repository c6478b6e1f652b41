"""GameClient, the typed client of the sample game, and the robot swarm.

``GameClient`` wraps the framework's :class:`~.sgs.Client` with one method
per request of the catalogue, so other projects and the tests talk to the
server in game terms. ``run_robots`` is the go-sgs "sg-robot": many clients
log in, do verified business requests, chat in a room and log out, and the
report says how fast and whether anything went wrong.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from .messages import (
    BusinessReq,
    BusinessResp,
    EchoReq,
    Error,
    JoinRoomReq,
    JoinRoomResp,
    LeaveRoomReq,
    LeaveRoomResp,
    LoginReq,
    LogoutReq,
    PingReq,
    PongResp,
    RoomMessage,
    RoomTick,
    SayReq,
    User,
    catalog,
)
from .sgs import Catalog, Client

__all__ = ["GameClient", "RobotReport", "run_robots"]

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
    ) -> None:
        self.host = host
        self.port = port
        self.protocol = protocol
        self.timeout = timeout
        self.account_id: str | None = None
        self._client = Client(
            host, port, protocol=protocol, catalog=catalog, connect_timeout=timeout
        )
        self._room_message_callbacks: list[Callback[RoomMessage]] = []
        self._room_tick_callbacks: list[Callback[RoomTick]] = []
        self._error_callbacks: list[Callback[Error]] = []
        self._client.on(RoomMessage, self._dispatch_room_message)
        self._client.on(RoomTick, self._dispatch_room_tick)
        self._client.on(Error, self._dispatch_error)

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

    async def logout(self) -> None:
        """Log out: wait for LogoutResp, then for the server to close the link."""
        await self._client.request(LogoutReq(), timeout=self.timeout)
        self.account_id = None
        await self.wait_closed(self.timeout)

    # -- pushes ---------------------------------------------------------------

    def on_room_message(self, callback: Callback[RoomMessage]) -> Callback[RoomMessage]:
        """Call ``callback(msg)`` (sync or async) for every RoomMessage pushed to us."""
        self._room_message_callbacks.append(callback)
        return callback

    def on_room_tick(self, callback: Callback[RoomTick]) -> Callback[RoomTick]:
        """Call ``callback(msg)`` (sync or async) for every RoomTick pushed to us."""
        self._room_tick_callbacks.append(callback)
        return callback

    def on_error(self, callback: Callback[Error]) -> Callback[Error]:
        """Call ``callback(error)`` for an Error that answers no request (a failed SayReq)."""
        self._error_callbacks.append(callback)
        return callback

    async def _dispatch_room_message(self, msg: RoomMessage) -> None:
        await _fan_out(self._room_message_callbacks, msg)

    async def _dispatch_room_tick(self, msg: RoomTick) -> None:
        await _fan_out(self._room_tick_callbacks, msg)

    async def _dispatch_error(self, msg: Error) -> None:
        await _fan_out(self._error_callbacks, msg)


async def _fan_out(callbacks: list[Callback[Any]], msg: Any) -> None:
    for callback in list(callbacks):
        result = callback(msg)
        if result is not None:
            await result


def now_ms() -> int:
    """Unix epoch milliseconds, the unit of PingReq/PongResp times."""
    return time.time_ns() // 1_000_000


# -- robots -----------------------------------------------------------------


@dataclass
class RobotReport:
    """What a robot run did; ``ok`` is False on any error or mismatch."""

    robots: int
    requests: int = 0
    errors: int = 0
    pushes: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    @property
    def msgs_per_s(self) -> float:
        """Requests answered per second of wall time."""
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
class _Run:
    """Shared bookkeeping of one ``run_robots`` call."""

    report: RobotReport
    progress: Callable[[int], None] | None
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
            self.report.failures.append(f"{robot}: {type(exc).__name__}: {exc}")


async def run_robots(
    host: str = "127.0.0.1",
    port: int = 6666,
    *,
    protocol: str = "json",
    robots: int = 10,
    requests: int = 100,
    room_size: int = 10,
    account_prefix: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Callable[[int], None] | None = None,
    seed: int | None = None,
) -> RobotReport:
    """Run ``robots`` robots against the server and report.

    Each robot logs in with a unique account, sends ``requests`` business
    requests and checks every key and result, joins a room shared with up to
    ``room_size`` robots, says one line once every member has joined, checks it
    receives each member's line exactly once, and logs out. ``progress(n)`` is
    called as requests complete (n requests each time).
    """
    prefix = account_prefix or f"robot-{uuid.uuid4().hex[:8]}"
    run = _Run(RobotReport(robots=robots), progress)
    rng = random.Random(seed)
    rooms: list[asyncio.Barrier] = []
    for first in range(0, robots, room_size):
        rooms.append(asyncio.Barrier(min(room_size, robots - first)))

    async def robot(index: int) -> None:
        account = f"{prefix}-{index}"
        room_index = index // room_size
        barrier = rooms[room_index]
        room = f"{prefix}-room-{room_index}"
        members = {
            f"{prefix}-{i}"
            for i in range(room_index * room_size, min(robots, (room_index + 1) * room_size))
        }
        try:
            await _robot_flow(
                run,
                account,
                room,
                members,
                barrier,
                requests,
                random.Random(rng.random()),
                host,
                port,
                protocol,
                timeout,
            )
        except Exception as exc:  # every failure counts, none may stop the swarm
            run.fail(account, exc)
            await barrier.abort()  # release the room-mates instead of letting them wait

    start = time.perf_counter()
    await asyncio.gather(*(robot(i) for i in range(robots)))
    run.report.elapsed = time.perf_counter() - start
    return run.report


async def _robot_flow(
    run: _Run,
    account: str,
    room: str,
    members: set[str],
    barrier: asyncio.Barrier,
    requests: int,
    rng: random.Random,
    host: str,
    port: int,
    protocol: str,
    timeout: float,
) -> None:
    said: dict[str, list[RoomMessage]] = {}
    all_heard = asyncio.Event()

    def heard(msg: RoomMessage) -> None:
        said.setdefault(msg.sender, []).append(msg)
        run.report.pushes += 1
        if set(said) >= members:
            all_heard.set()

    async with GameClient(host, port, protocol=protocol, timeout=timeout) as client:
        client.on_room_message(heard)
        user = await run.timed(client.login(account))
        if user.account_id != account:
            raise RobotFailure(f"logged in as {user.account_id!r}, asked for {account!r}")
        for _ in range(requests):
            key = rng.randrange(1 << 31)
            value1, value2 = rng.randrange(-(1 << 30), 1 << 30), rng.randrange(-(1 << 30), 1 << 30)
            resp = await run.timed(client.business(key, value1, value2))
            if resp.key != key or resp.result != value1 + value2:
                raise RobotFailure(
                    f"business({key}, {value1}, {value2}) answered"
                    f" key={resp.key} result={resp.result}"
                )
        joined = await run.timed(client.join(room))
        if joined.room != room or account not in joined.members:
            raise RobotFailure(
                f"joined {joined.room!r} with members {joined.members}, expected {room!r}"
            )
        await asyncio.wait_for(barrier.wait(), timeout)
        await client.say(f"hello from {account}")
        await asyncio.wait_for(all_heard.wait(), timeout)
        for sender in members:
            lines = said.get(sender, [])
            expected = [RoomMessage(room=room, sender=sender, text=f"hello from {sender}")]
            if lines != expected:
                raise RobotFailure(f"heard {lines} from {sender}, expected it once")
        await run.timed(client.logout())
