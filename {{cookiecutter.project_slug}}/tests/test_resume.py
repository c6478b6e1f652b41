"""Session resumption, over real sockets, under every codec, TCP and WebSocket.

A peer counts the frames it receives after ``ResumeResp`` (the per-link
outbound sequence), its socket is cut without a logout, and it resumes on a
new connection with the count as ``last_seq``. In a cluster (a real
redis-server), a resume on another node than the one holding the player is
relayed through the holder: the same answers, the same exact replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis as redis_sync

from fwkit import RawConn
from redis_server import RedisServer
from testkit import ServeProcess, free_port
from wskit import ws_peer

from {{ cookiecutter.package_name }} import messages as m
from {{ cookiecutter.package_name }}.client import (
    GameClient,
    run_robots,
)
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.sgs import (
    Message,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.cluster import envelope
from {{ cookiecutter.package_name }}.sgs.protocol import PROTOCOLS
from {{ cookiecutter.package_name }}.sgs.resume import wire
from {{ cookiecutter.package_name }}.sgs.settings import ResourceModel
from {{ cookiecutter.package_name }}.sgs.testing import running_server

TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def game(protocol: str, **overrides: object) -> AsyncIterator[Server]:
    """The sample game (no RoomTick meanwhile: the room messages are the test's own)."""
    overrides.setdefault("ws_port", free_port())
    async with running_server(
        router,
        setup=functools.partial(setup, tick_interval=3600.0),
        protocol=protocol,
        **overrides,
    ) as server:
        yield server


class WsConn:
    """The WebSocket side of a peer: the same calls as RawConn."""

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.pending: list[tuple[int, bytes]] = []

    def send(self, data: bytes) -> None:
        self.peer.send(data)

    async def read_frame(self, timeout: float) -> tuple[int, bytes]:
        while not self.pending:
            self.pending += await asyncio.wait_for(self.peer.messages.get(), timeout)
        return self.pending.pop(0)

    def abort(self) -> None:
        self.peer.transport.underlying_transport.abort()


class Peer:
    """A raw TLV peer that decodes with the server's codec and counts what it receives."""

    def __init__(self, server: Server, conn: Any) -> None:
        self.server = server
        self.conn = conn
        self.count = 0

    @classmethod
    async def open(cls, server: Server, transport: str = "tcp") -> Peer:
        if transport == "ws":
            return cls(server, WsConn(await ws_peer(server.ws_port)))
        return cls(server, await RawConn.open(server.port))

    def send(self, msg: Message) -> None:
        self.conn.send(self.server.codec.encode_frame(msg))

    async def recv(self) -> Message:
        msg_id, value = await self.conn.read_frame(TIMEOUT)
        msg = self.server.codec.decode(msg_id, value)
        if isinstance(msg, m.ResumeResp):
            self.count = msg.seq
        else:
            self.count += 1
        return msg

    async def expect(self, cls: type[Message]) -> Message:
        msg = await self.recv()
        assert isinstance(msg, cls), msg
        return msg

    async def login(self, account: str, room: str | None = None) -> str:
        self.send(m.LoginReq(account_id=account))
        await self.expect(m.LoginResp)
        if room is not None:
            self.send(m.JoinRoomReq(room=room))
            await self.expect(m.JoinRoomResp)
        self.send(m.ResumeReq())
        resp = await self.expect(m.ResumeResp)
        assert resp.recovered and resp.token
        return resp.token

    def cut(self) -> None:
        """The socket dies: no LogoutReq, no FIN handshake the server could read as one."""
        if isinstance(self.conn, RawConn):
            self.conn.writer.transport.abort()
        else:
            self.conn.abort()


async def until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def held(server: Server, account: str) -> bool:
    session = server.resumer.sessions.get(account)
    return session is not None and session.live is None


async def say(peer: Peer, n: int) -> None:
    for i in range(n):
        peer.send(m.SayReq(text=f"m{i}"))
    for _ in range(n):
        await peer.expect(m.RoomMessage)


CASES = [
    *(pytest.param(p, t, "shared_all", id=f"{p}-{t}") for p in PROTOCOLS for t in ("tcp", "ws")),
    *(pytest.param("json", "tcp", rm.value, id=f"json-tcp-{rm.value}") for rm in ResourceModel),
]


@pytest.mark.parametrize(("protocol", "transport", "model"), CASES)
async def test_replay_exactly_what_was_missed_in_order_once(
    protocol: str, transport: str, model: str
) -> None:
    async with game(protocol, resource_model=model) as server:
        a, b = await Peer.open(server, transport), await Peer.open(server)
        token = await a.login("alice", room="r")
        await b.login("bob", room="r")
        a.cut()
        await until(lambda: held(server, "alice"))
        presence = await b.expect(m.RoomPresence)
        assert (presence.name, presence.status) == ("alice", "dropped")
        await say(b, 20)
        a2 = await Peer.open(server, transport)
        a2.send(m.ResumeReq(token=token, last_seq=a.count))
        resp = await a2.expect(m.ResumeResp)
        assert resp.recovered and resp.replayed == 20 and resp.token != token
        texts = [(await a2.expect(m.RoomMessage)).text for _ in range(20)]
        assert texts == [f"m{i}" for i in range(20)]
        presence = await b.expect(m.RoomPresence)
        assert (presence.name, presence.status) == ("alice", "resumed")
        # Nothing more was replayed; the resumed player is the same member of the same room.
        a2.send(m.SayReq(text="back"))
        assert (await a2.expect(m.RoomMessage)).text == "back"
        assert (await b.expect(m.RoomMessage)).sender == "alice"
        a2.send(m.BusinessReq(key=1, value1=2, value2=3))
        assert (await a2.expect(m.BusinessResp)).result == 5


async def test_overflow_is_not_recovered_and_sends_the_snapshot() -> None:
    async with game("json") as server:
        a, b = await Peer.open(server), await Peer.open(server)
        token = await a.login("alice", room="r")
        await b.login("bob", room="r")
        a.cut()
        await until(lambda: held(server, "alice"))
        await b.expect(m.RoomPresence)
        await say(b, 1000)
        a2 = await Peer.open(server)
        a2.send(m.ResumeReq(token=token, last_seq=a.count))
        resp = await a2.expect(m.ResumeResp)
        assert not resp.recovered and resp.replayed == 0
        user = (await a2.expect(m.LoginResp)).user
        assert user.account_id == "alice"
        joined = await a2.expect(m.JoinRoomResp)
        assert joined.room == "r" and "alice" in joined.members
        a2.send(m.EchoReq(text="after"))
        assert (await a2.expect(m.EchoResp)).text == "after"  # no RoomMessage of the 1,000


async def test_the_buffer_of_a_held_player_stays_within_both_bounds() -> None:
    """A flood at a held player: what is kept never passes resume_buffer nor the byte bound."""
    async with game("json", resume_buffer=50, resume_buffer_bytes=2048) as server:
        a, b = await Peer.open(server), await Peer.open(server)
        token = await a.login("alice", room="r")
        await b.login("bob", room="r")
        a.cut()
        await until(lambda: held(server, "alice"))
        await b.expect(m.RoomPresence)
        ring = server.resumer.sessions["alice"].ring
        for _ in range(10):
            await say(b, 30)
            assert ring.count <= 50 and ring.size <= 2048, (ring.count, ring.size)
        assert ring.seq == 300 and ring.count > 0
        # The last ones are still there: a client that saw all but them resumes exactly.
        a2 = await Peer.open(server)
        a2.send(m.ResumeReq(token=token, last_seq=ring.seq - 3))
        resp = await a2.expect(m.ResumeResp)
        assert resp.recovered and resp.replayed == 3
        assert [(await a2.expect(m.RoomMessage)).text for _ in range(3)] == ["m27", "m28", "m29"]


async def test_expiry_refuses_with_resume_expired_and_leaves_once() -> None:
    async with game("json", resume_window=0.3) as server:
        a, b = await Peer.open(server), await Peer.open(server)
        token = await a.login("alice", room="r")
        await b.login("bob", room="r")
        a.cut()
        await b.expect(m.RoomPresence)
        await until(lambda: "alice" not in server.resumer.sessions)
        a2 = await Peer.open(server)
        a2.send(m.ResumeReq(token=token, last_seq=a.count))
        assert (await a2.expect(m.Error)).code == "resume_expired"
        assert server.player_of(next(iter(server.links.values()))) is not None  # bob's
        a2.send(m.LoginReq(account_id="alice"))
        assert (await a2.expect(m.LoginResp)).user.account_id == "alice"
        assert server.resumer.expired == 1


async def test_token_misuse_is_refused_and_the_player_unaffected() -> None:
    async with game("json") as server:
        a, b = await Peer.open(server), await Peer.open(server)
        token = await a.login("alice")
        await b.login("bob")
        forged = await Peer.open(server)
        forged.send(m.ResumeReq(token=token[:-4] + "AAAA", last_seq=0))
        assert (await forged.expect(m.Error)).code == "resume_token_invalid"
        b.send(m.ResumeReq(token=token, last_seq=0))  # bob's link, alice's token
        assert (await b.expect(m.Error)).code == "resume_wrong_account"
        a.cut()
        await until(lambda: held(server, "alice"))
        a2 = await Peer.open(server)
        a2.send(m.ResumeReq(token=token, last_seq=a.count))
        resp = await a2.expect(m.ResumeResp)
        assert resp.recovered
        reuse = await Peer.open(server)
        reuse.send(m.ResumeReq(token=token, last_seq=0))
        assert (await reuse.expect(m.Error)).code == "resume_token_used"
        a2.send(m.EchoReq(text="still here"))
        assert (await a2.expect(m.EchoResp)).text == "still here"


async def test_a_fresh_login_ends_the_held_session_at_once() -> None:
    async with game("json") as server:
        a = await Peer.open(server)
        token = await a.login("alice", room="r")
        a.cut()
        await until(lambda: held(server, "alice"))
        fresh = await Peer.open(server)
        fresh.send(m.LoginReq(account_id="alice"))
        await fresh.expect(m.LoginResp)
        await until(lambda: "alice" not in server.resumer.sessions)
        assert not [g for g in server.groups.values() if "alice" in g.local_labels()]
        late = await Peer.open(server)
        late.send(m.ResumeReq(token=token, last_seq=a.count))
        assert (await late.expect(m.Error)).code == "resume_expired"


async def test_half_open_link_loses_to_the_resumed_one() -> None:
    async with game("json") as server:
        a = await Peer.open(server)
        token = await a.login("alice")
        a2 = await Peer.open(server)
        a2.send(m.ResumeReq(token=token, last_seq=a.count))
        resp = await a2.expect(m.ResumeResp)
        assert resp.recovered and resp.replayed == 0
        assert (await a.expect(m.Error)).code == "replaced"
        assert await a.conn.read_eof() == b""
        a2.send(m.BusinessReq(key=1, value1=1, value2=1))
        assert (await a2.expect(m.BusinessResp)).result == 2


async def test_resume_window_zero_is_off() -> None:
    async with game("json", resume_window=0) as server:
        a = await Peer.open(server)
        a.send(m.LoginReq(account_id="alice"))
        await a.expect(m.LoginResp)
        a.send(m.ResumeReq())
        assert (await a.expect(m.Error)).code == "resume_off"


@pytest.mark.parametrize("protocol", ["json", "protobuf"])
async def test_robots_drop_and_resume_with_exact_counts_and_lines(protocol: str) -> None:
    async with game(protocol) as server:
        report = await run_robots(
            "127.0.0.1",
            server.port,
            protocol=protocol,
            robots=6,
            requests=10,
            room_size=3,
            seed=7,
            drop_rate=0.3,
            timeout=TIMEOUT,
        )
        assert report.ok, report.failures
        assert report.drops > 0 and report.resumed == report.drops
        assert "drops" in report.summary()


async def test_game_client_resumes_by_itself_and_surfaces_recovered() -> None:
    async with game("json") as server:
        recovered: asyncio.Queue[bool | None] = asyncio.Queue()
        heard: list[str] = []
        async with GameClient("127.0.0.1", server.port, timeout=TIMEOUT, resume=3) as alice:
            alice.on_resumed(recovered.put_nowait)
            alice.on_room_message(lambda msg: heard.append(msg.text))
            await alice.login("alice")
            await alice.join("r")
            b = await Peer.open(server)
            await b.login("bob", room="r")
            alice.drop()  # resumed at once: before or after the server saw the drop
            await say(b, 5)
            assert await asyncio.wait_for(recovered.get(), TIMEOUT) is True
            await until(lambda: len(heard) == 5)
            assert heard == [f"m{i}" for i in range(5)]
            assert (await alice.business(1, 2, 3)).result == 5
            await alice.logout()  # a logout is the end: nothing is resumed
            assert recovered.empty()


@contextlib.asynccontextmanager
async def cluster_node(
    url: str, name: str, protocol: str = "json", **overrides: object
) -> AsyncIterator[Server]:
    settings: dict[str, object] = {"cluster_lease": 2.0, "cluster_timeout": 1.0, **overrides}
    async with game(
        protocol, cluster_url=url, node_id=f"{name}-{os.getpid()}", **settings
    ) as server:
        yield server


async def relayed_to(a_node: Server, b_node: Server, account: str) -> None:
    """Wait until ``account`` held on ``a_node`` is carried by a connection of ``b_node``."""
    await until(lambda: bool(a_node.resumer.relay.carriers) and not held(a_node, account))
    await until(lambda: bool(b_node.resumer.relay.relays))


CROSS = [pytest.param(p, t, id=f"{p}-{t}") for p in PROTOCOLS for t in ("tcp", "ws")]


@pytest.mark.parametrize(("protocol", "transport"), CROSS)
async def test_resume_on_another_node_is_relayed_through_the_holder_exactly(
    redis_server: RedisServer, protocol: str, transport: str
) -> None:
    """The issue's replay test across nodes, then a second drop and a fencing resume."""
    async with (
        cluster_node(redis_server.url, "a", protocol) as a_node,
        cluster_node(redis_server.url, "b", protocol) as b_node,
    ):
        a, b = await Peer.open(a_node, transport), await Peer.open(b_node)
        token = await a.login("alice", room="r")
        await b.login("bob", room="r")
        a.cut()
        await until(lambda: held(a_node, "alice"))
        presence = await b.expect(m.RoomPresence)
        assert (presence.name, presence.status) == ("alice", "dropped")
        await say(b, 20)
        # The lines reach alice's node through the broker: wait until all 20 are kept there.
        await until(lambda: a_node.resumer.sessions["alice"].ring.seq == 20)
        # On node B, which does not hold alice: relayed through node A.
        there = await Peer.open(b_node, transport)
        there.send(m.ResumeReq(token=token, last_seq=a.count))
        resp = await there.expect(m.ResumeResp)
        assert resp.recovered and resp.replayed == 20 and resp.token != token
        assert [(await there.expect(m.RoomMessage)).text for _ in range(20)] == [
            f"m{i}" for i in range(20)
        ]
        presence = await b.expect(m.RoomPresence)
        assert (presence.name, presence.status) == ("alice", "resumed")
        # Still the same player and member, playing through B: its requests run on A.
        there.send(m.BusinessReq(key=7, value1=2, value2=3))
        answer = await there.expect(m.BusinessResp)
        assert (answer.key, answer.result) == (7, 5)
        assert a_node.player_of(a_node.resumer.sessions["alice"].link).state["counter"] == 1
        there.send(m.SayReq(text="via b"))
        assert (await there.expect(m.RoomMessage)).text == "via b"
        heard = await b.expect(m.RoomMessage)
        assert (heard.sender, heard.text) == ("alice", "via b")
        # B's connection drops too: the player is held on A again, and resumes there exactly.
        there.cut()
        await until(lambda: held(a_node, "alice"))
        assert (await b.expect(m.RoomPresence)).status == "dropped"
        await say(b, 3)
        await until(lambda: a_node.resumer.sessions["alice"].ring.seq == there.count + 3)
        back = await Peer.open(b_node, transport)  # relayed again, from the count B reached
        back.send(m.ResumeReq(token=resp.token, last_seq=there.count))
        resp = await back.expect(m.ResumeResp)
        assert resp.recovered and resp.replayed == 3
        assert [(await back.expect(m.RoomMessage)).text for _ in range(3)] == ["m0", "m1", "m2"]
        assert (await b.expect(m.RoomPresence)).status == "resumed"
        # A resume on A while B's connection is still up: B's loses with Error(replaced).
        home = await Peer.open(a_node)
        home.send(m.ResumeReq(token=resp.token, last_seq=back.count))
        final = await home.expect(m.ResumeResp)
        assert final.recovered and final.replayed == 0
        assert (await back.expect(m.Error)).code == "replaced"
        await until(lambda: not b_node.resumer.relay.relays and not a_node.resumer.relay.carriers)
        assert b_node.stats.errors.get("replaced") == 1  # answered by B's outcome service
        home.send(m.BusinessReq(key=1, value1=1, value2=1))
        assert (await home.expect(m.BusinessResp)).result == 2
        assert a_node.player_of(a_node.resumer.sessions["alice"].link).state["counter"] == 2
        # The others never saw a leave or a join: only the presence changes read above.
        b.send(m.EchoReq(text="end"))
        assert (await b.expect(m.EchoResp)).text == "end"


async def test_token_misuse_across_nodes_is_refused_and_the_player_unaffected(
    redis_server: RedisServer,
) -> None:
    async with (
        cluster_node(redis_server.url, "a") as a_node,
        cluster_node(redis_server.url, "b") as b_node,
    ):
        a, b = await Peer.open(a_node), await Peer.open(b_node)
        token = await a.login("alice")
        await b.login("bob")
        forged = await Peer.open(b_node)
        forged.send(m.ResumeReq(token=token[:-4] + "AAAA", last_seq=0))
        assert (await forged.expect(m.Error)).code == "resume_token_invalid"
        b.send(m.ResumeReq(token=token, last_seq=0))  # bob's link on B, alice's token
        assert (await b.expect(m.Error)).code == "resume_wrong_account"
        a.cut()
        await until(lambda: held(a_node, "alice"))
        first = await Peer.open(b_node)
        first.send(m.ResumeReq(token=token, last_seq=a.count))
        resp = await first.expect(m.ResumeResp)
        assert resp.recovered
        # A second relayed resume on B while the first connection is up: the first is fenced.
        there = await Peer.open(b_node)
        there.send(m.ResumeReq(token=resp.token, last_seq=first.count))
        assert (await there.expect(m.ResumeResp)).recovered
        assert (await first.expect(m.Error)).code == "replaced"
        assert await first.conn.read_eof() == b""
        for node in (b_node, a_node):  # the spent token, relayed from B and at home on A
            reuse = await Peer.open(node)
            reuse.send(m.ResumeReq(token=token, last_seq=0))
            assert (await reuse.expect(m.Error)).code == "resume_token_used"
        assert b_node.stats.errors.get("resume_token_used") == 1  # counted where it was answered
        assert b_node.stats.errors.get("replaced") == 1
        there.send(m.EchoReq(text="still here"))
        assert (await there.expect(m.EchoResp)).text == "still here"
        b.send(m.EchoReq(text="bob too"))
        assert (await b.expect(m.EchoResp)).text == "bob too"


async def test_a_holder_stopped_in_the_window_answers_expired_elsewhere_and_a_login_works(
    redis_server: RedisServer,
) -> None:
    """A graceful stop ends the held session (state flushed): B has nothing to relay to."""
    async with cluster_node(redis_server.url, "b") as b_node:
        async with cluster_node(redis_server.url, "a") as a_node:
            a = await Peer.open(a_node)
            token = await a.login("alice", room="r")
            for i in range(2):
                a.send(m.BusinessReq(key=i, value1=i, value2=1))
                await a.expect(m.BusinessResp)
            a.cut()
            await until(lambda: held(a_node, "alice"))
        there = await Peer.open(b_node)
        there.send(m.ResumeReq(token=token, last_seq=a.count))
        assert (await there.expect(m.Error)).code == "resume_expired"
        assert not b_node.resumer.relay.relays
        there.send(m.LoginReq(account_id="alice"))
        assert (await there.expect(m.LoginResp)).user.counter == 2
        there.send(m.EchoReq(text="fresh"))
        assert (await there.expect(m.EchoResp)).text == "fresh"  # nothing replayed


async def test_a_broker_lost_while_relaying_closes_the_connection_and_nothing_is_replayed_twice(
    redis_server: RedisServer,
) -> None:
    """Without the broker nobody can vouch for the relay: B closes it, A holds the player again.

    Once the broker is back (empty) and A has re-registered alice's binding, a
    resume on B is relayed again and replays exactly what the client missed:
    here nothing, so nothing is replayed twice.
    """
    async with (
        cluster_node(redis_server.url, "a") as a_node,
        cluster_node(redis_server.url, "b") as b_node,
    ):
        a = await Peer.open(a_node)
        token = await a.login("alice")
        a.cut()
        await until(lambda: held(a_node, "alice"))
        there = await Peer.open(b_node)
        there.send(m.ResumeReq(token=token, last_seq=a.count))
        resp = await there.expect(m.ResumeResp)
        assert resp.recovered
        for i in range(2):
            there.send(m.BusinessReq(key=i, value1=i, value2=1))
            assert (await there.expect(m.BusinessResp)).result == i + 1
        redis_server.kill()
        try:
            await until(lambda: not b_node.resumer.relay.relays and held(a_node, "alice"))
            assert await there.conn.read_eof(timeout=TIMEOUT) == b""
        finally:
            redis_server.start()
        await until(lambda: a_node.cluster.connected and b_node.cluster.connected)
        bind = f"{b_node.settings.cluster_prefix}:bind:alice"
        with redis_sync.Redis(port=redis_server.port) as r:
            await until(lambda: r.hget(bind, "node") == a_node.cluster.node_id.encode())
        back = await Peer.open(b_node)
        back.send(m.ResumeReq(token=resp.token, last_seq=there.count))
        again = await back.expect(m.ResumeResp)
        assert again.recovered and again.replayed == 0
        back.send(m.BusinessReq(key=9, value1=4, value2=5))
        assert (await back.expect(m.BusinessResp)).result == 9  # the very next frame
        assert a_node.player_of(a_node.resumer.sessions["alice"].link).state["counter"] == 3


async def test_owner_death_closes_the_relayed_connection_and_a_login_starts_afresh(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The holder is SIGKILLed while B relays: no partial replay, the store has the counter."""
    victim = ServeProcess(
        tmp_path,
        name="holder",
        cluster_url=redis_server.url,
        node_id=f"holder-{os.getpid()}",
        cluster_lease="1.5",
        cluster_timeout="1.0",
        store_flush_interval="0.05",
        protocol="json",
    )
    try:
        await victim.start()
        async with cluster_node(redis_server.url, "b", cluster_lease=1.5) as b_node:
            a = Peer(b_node, await RawConn.open(victim.port))
            token = await a.login("alice")
            for i in range(3):
                a.send(m.BusinessReq(key=i, value1=i, value2=1))
                assert (await a.expect(m.BusinessResp)).result == i + 1
            a.cut()
            there = await Peer.open(b_node)
            deadline = time.monotonic() + TIMEOUT
            while True:  # until the holder saw the drop (before it, alice is not held yet)
                there.send(m.ResumeReq(token=token, last_seq=a.count))
                got = await there.recv()
                if isinstance(got, m.ResumeResp):
                    break
                assert isinstance(got, m.Error) and time.monotonic() < deadline, got
                await asyncio.sleep(0.05)
            assert got.recovered and got.replayed == 0
            await until(lambda: bool(b_node.resumer.relay.relays))
            await asyncio.sleep(1.0)  # 20 store flushes: the counter is in Redis
            victim.kill()
            # Within the holder's lease B sees it gone and closes the relayed connection.
            assert await there.conn.read_eof(timeout=TIMEOUT) == b""
            assert b_node.resumer.relay.lost == 1 and not b_node.resumer.relay.relays
            again = await Peer.open(b_node)
            again.send(m.ResumeReq(token=got.token, last_seq=there.count))
            assert (await again.expect(m.Error)).code == "resume_expired"
            again.send(m.LoginReq(account_id="alice"))
            assert (await again.expect(m.LoginResp)).user.counter == 3
            again.send(m.EchoReq(text="fresh"))
            assert (await again.expect(m.EchoResp)).text == "fresh"  # nothing replayed
    finally:
        victim.kill()


async def test_junk_and_strays_on_the_resume_channel_are_counted_and_harmless(
    redis_server: RedisServer,
) -> None:
    """Unreadable RESUME bodies are junk; an Out for no relay and a Gone for no carrier: nothing."""
    async with cluster_node(redis_server.url, "a") as a_node:
        peer = await Peer.open(a_node)
        await peer.login("alice")
        channel = a_node.cluster.keys.to(a_node.cluster.node_id)  # type: ignore[attr-defined]
        bodies = [  # in order on one channel: the junk counted last means all were handled
            wire.pack(wire.Out("nobody", 1, a_node.codec.encode_frame(m.EchoResp(text="x")))),
            wire.pack(wire.Gone("nobody")),
            b"\xc1not msgpack",
            msgspec.msgpack.encode(["resume", "r1"]),  # too short for a Resume
        ]
        with redis_sync.Redis(port=redis_server.port) as r:
            for body in bodies:
                r.publish(channel, envelope.pack(envelope.Kind.RESUME, b"elsewhere", 0, 0, body))
        await until(lambda: a_node.cluster.stats.junk == 2)
        peer.send(m.EchoReq(text="fine"))
        assert (await peer.expect(m.EchoResp)).text == "fine"  # the stray Out went nowhere
        assert not a_node.resumer.relay.carriers and not a_node.resumer.relay.relays
