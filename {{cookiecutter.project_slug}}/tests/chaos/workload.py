"""The clients: players that log in, do business, join and leave rooms and log out, recording all.

Two players share each account and move between nodes, so logins keep
taking accounts over from other links, here and across nodes, while the
nemesis works. Every request is an :class:`~chaos.history.Op`; a request
that times out closes its link (its outcome is unknown, and a closed link is
a state the checkers can reason about). Unsolicited ``Error`` notices
(``replaced``) and link closes are recorded as events. The players talk only
through the public client (:class:`GameClient`) and the wire messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from {{ cookiecutter.package_name }}.client import GameClient
from {{ cookiecutter.package_name }}.messages import Error, RoomMessage
from {{ cookiecutter.package_name }}.sgs.errors import RemoteError

from .history import CLOSED, ERROR, OK, TIMEOUT, History, Op
from .procs import Node

PROBE_PREFIX = "probe-"
#: Seconds between the probes' joins and their first line; lines said per probe; seconds each waits.
JOIN_SETTLE, SAYS, HEAR_WAIT = 1.0, 3, 2.0
_link_ids = itertools.count(1)
#: Cumulative odds of business and join (the rest: leave) while a session lasts.
ODDS = (0.85, 0.94)
#: Seconds a session lasts before its player logs out or moves to another node.
HOPPING, STICKY = (2.0, 8.0), (10.0, 30.0)


class Session:
    """One connection of one player: its link id, node, account, and the room it is in."""

    def __init__(self, client: GameClient, node: str, history: History, process: str) -> None:
        self.client = client
        self.node = node
        self.link = next(_link_ids)
        self.account = ""
        self.room: str | None = None
        self.history = history
        self.process = process
        self.closing = False  # this side closed it (a timeout, a move, the end of the run)
        self._watch = asyncio.ensure_future(self._watch_close())
        client.on_error(self._notice)

    def _notice(self, error: Error) -> None:
        self.history.event("notice", error.code, **self.fields())

    async def _watch_close(self) -> None:
        await self.client.wait_closed()
        self.room = None
        by = "client" if self.closing else "server"
        self.history.event("closed", by, **self.fields())

    def fields(self) -> dict[str, Any]:
        return {"process": self.process, "link": self.link, "node": self.node,
                "account": self.account}  # fmt: skip

    @property
    def closed(self) -> bool:
        return self.client.closed

    async def request(self, kind: str, call: Callable[[], Awaitable[Any]]) -> Op:
        """Run one request as an op of the history."""
        op = self.history.invoke(kind, **self.fields())
        try:
            value = await call()
        except RemoteError as exc:
            return self.history.complete(op, ERROR, exc.code)
        except TimeoutError:
            self.history.complete(op, TIMEOUT)
            await self.close()  # unknown outcome: start again from a known state
            return op
        except (ConnectionError, OSError) as exc:
            return self.history.complete(op, CLOSED, str(exc))
        return self.history.complete(op, OK, value)

    async def close(self) -> None:
        if not self.client.closed:
            self.closing = True
        with contextlib.suppress(Exception):
            await self.client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._watch), 2.0)


async def open_session(
    node: Node, history: History, process: str, timeout: float
) -> Session | None:
    client = GameClient("127.0.0.1", node.port, timeout=timeout)
    try:
        await asyncio.wait_for(client.connect(), timeout)
    except (OSError, TimeoutError):
        with contextlib.suppress(Exception):
            await client.close()
        return None
    return Session(client, node.name, history, process)


class Player:
    """One client process of the history: a loop of requests on one link at a time."""

    def __init__(
        self,
        name: str,
        account: str,
        nodes: Sequence[Node],
        rooms: Sequence[str],
        history: History,
        rng: random.Random,
        timeout: float,
        sticky: bool,
    ) -> None:
        self.name = name
        self.account = account
        self.nodes = nodes
        self.rooms = rooms
        self.history = history
        self.rng = rng
        self.timeout = timeout
        # Of an account's two players, one hops between nodes every few seconds;
        # the sticky one keeps its link for long (a link that lost its account
        # without being told then goes on asking, and the checker sees it
        # served), and waits a little before taking its account back.
        self.sticky = sticky
        self.session: Session | None = None
        self.session_ends = 0.0
        self.busy = False
        self.requests = 0

    async def run(self, go: asyncio.Event, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not go.is_set():
                await go.wait()
                continue
            self.busy = True
            try:
                await self.step()
            finally:
                self.busy = False
            await asyncio.sleep(self.rng.uniform(0.02, 0.15))

    async def step(self) -> None:
        s = self.session
        if s is None or s.closed:
            if s is not None:
                await s.close()
                self.session = None
                if self.sticky:
                    await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            await self.login()
            return
        roll = self.rng.random()
        if asyncio.get_running_loop().time() > self.session_ends:
            if roll < 0.5:
                op = await s.request("logout", s.client.logout)
                op.value = None
            await s.close()  # logged out, or dropped without a word to move elsewhere
            self.session = None
        elif roll < ODDS[0]:
            key, v1, v2 = self.rng.randrange(1 << 20), self.rng.randrange(1000), 1
            op = await s.request("business", lambda: s.client.business(key, v1, v2))
            if op.ok and op.value.result != v1 + v2:
                op.outcome, op.value = ERROR, f"wrong result {op.value.result}"
            elif op.ok:
                op.value = None
        elif roll < ODDS[1]:
            room = self.rng.choice(self.rooms)
            op = await s.request("join", lambda: s.client.join(room))
            if op.ok:
                s.room = room
                op.value = {"room": room, "members": list(op.value.members)}
        else:
            op = await s.request("leave", s.client.leave)
            if op.ok or op.value == "not_in_room":
                s.room = None
            op.value = getattr(op.value, "room", op.value)
        self.requests += 1

    async def login(self) -> None:
        node = self.rng.choice([n for n in self.nodes if n.alive] or list(self.nodes))
        s = await open_session(node, self.history, self.name, self.timeout)
        if s is None:
            await asyncio.sleep(0.2)
            return
        s.account = self.account
        op = await s.request("login", lambda: s.client.login(self.account))
        self.requests += 1
        if op.ok:
            op.value = op.value.counter
            self.session = s
            lifetime = STICKY if self.sticky else HOPPING
            self.session_ends = asyncio.get_running_loop().time() + self.rng.uniform(*lifetime)
        else:
            await s.close()

    def in_room(self, room: str) -> str | None:
        s = self.session
        return self.account if s is not None and not s.closed and s.room == room else None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


async def quiesce(players: Sequence[Player], go: asyncio.Event, timeout: float) -> None:
    """Stop the players between requests (a request in flight is allowed to finish)."""
    go.clear()
    deadline = asyncio.get_running_loop().time() + timeout
    while any(p.busy for p in players) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


async def readyz(node: Node, timeout: float = 1.0) -> bool | None:
    """GET /readyz: True (200), False (503), None (no answer)."""
    if not node.metrics_port or not node.alive:
        return None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", node.metrics_port), timeout
        )
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), timeout)
        parts = status.split()
        return parts[1] == b"200" if len(parts) > 1 else None
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


async def watch_readiness(
    nodes: Sequence[Node], history: History, stop: asyncio.Event, every: float = 0.5
) -> None:
    """Sample every node's /readyz into the history until ``stop``."""
    while not stop.is_set():
        samples = await asyncio.gather(*(readyz(n) for n in nodes if not n.stopped))
        for node, ready in zip([n for n in nodes if not n.stopped], samples, strict=True):
            history.event("readyz", ready, node=node.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def probe_rooms(
    nodes: Sequence[Node],
    rooms: Sequence[str],
    expected: Callable[[str], list[str]],
    history: History,
    deadline: float,
    timeout: float,
) -> None:
    """In every room, from every live node: do the members match, and does everyone hear?

    A probe account (``probe-*``, never a player's) joins the room on each
    node and asks for the members until they equal ``expected(room)`` or
    ``deadline`` (history time) passes: one ``members`` op per probe with
    what it saw last. Then each probe says a line and every other probe must
    hear it: one ``hear`` op per (speaker, listener).
    """
    live = [n for n in nodes if n.alive and not n.stopped]
    for room in rooms:
        probes: list[tuple[Node, Session, list[RoomMessage]]] = []
        try:
            for node in live:
                s = await open_session(node, history, "probe", timeout)
                if s is None:
                    history.event("members", {"room": room, "error": "no connection"},
                                  node=node.name)  # fmt: skip
                    continue
                s.account = f"{PROBE_PREFIX}{room}-{node.name}-{s.link}"
                heard: list[RoomMessage] = []
                s.client.on_room_message(heard.append)
                probes.append((node, s, heard))
                await s.request("probe_login", lambda s=s: s.client.login(s.account))
                want = sorted(expected(room))
                op = history.invoke("members", **s.fields())
                seen: list[str] | str = "no answer"
                while True:
                    with contextlib.suppress(RemoteError, TimeoutError, ConnectionError):
                        resp = await s.client.join(room)
                        seen = sorted(m for m in resp.members if not m.startswith(PROBE_PREFIX))
                    if seen == want or history.now() > deadline:
                        break
                    await asyncio.sleep(0.25)
                history.complete(op, OK, {"room": room, "expected": want, "members": seen})
            # A line said at the very moment of a join may miss the newcomer (its
            # node learns of the join one broker delivery later): let the joins
            # settle, and say it up to SAYS times before calling a member deaf.
            await asyncio.sleep(JOIN_SETTLE)
            for node, speaker, _ in probes:
                text = f"said by {speaker.account}"
                others = [(o, listener, heard) for o, listener, heard in probes
                          if listener is not speaker]  # fmt: skip
                ops = [history.invoke("hear", **listener.fields()) for _, listener, _ in others]
                for _ in range(SAYS):
                    with contextlib.suppress(ConnectionError, OSError):
                        await speaker.client.say(text)
                    end = asyncio.get_running_loop().time() + HEAR_WAIT
                    while asyncio.get_running_loop().time() < end and not all(
                        any(m.text == text for m in heard) for _, _, heard in others
                    ):
                        await asyncio.sleep(0.05)
                    if all(any(m.text == text for m in heard) for _, _, heard in others):
                        break
                for op, (other, _, heard) in zip(ops, others, strict=True):
                    got = any(m.text == text for m in heard)
                    history.complete(op, OK, {"room": room, "from": node.name, "to": other.name,
                                              "heard": got})  # fmt: skip
        finally:
            for _, s, _ in probes:
                await s.close()
