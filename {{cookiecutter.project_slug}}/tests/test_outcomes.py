"""Every bad-input class, over TCP and WebSocket: the Error code, the close, and the metric.

One row per way a client can be told no. For each row and transport a real
server (metrics on) is scraped before and after the probe; the outcome
series (errors, refusals, closes, protocol and handler errors, throttles)
must move by exactly the row's counts and nothing else, so a path that
forgets to count, counts twice, or counts under another name fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
from picows import WSCloseCode, WSHandshakeError, WSMsgType
from prometheus_client.parser import text_string_to_metric_families

import fwkit
from fwkit import BagReq, BoomReq, DenyReq, EchoReq, KickReq, RawConn
from testkit import free_port
from wskit import ws_peer

from {{ cookiecutter.package_name }} import (
    handlers,
)
from {{ cookiecutter.package_name }}.messages import (
    LoginReq,
    LoginResp,
)
from {{ cookiecutter.package_name }}.messages import (
    catalog as game_catalog,
)
from {{ cookiecutter.package_name }}.settings import (
    Settings,
)
from {{ cookiecutter.package_name }}.sgs import (
    Router,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.builtins import (
    Error,
)
from {{ cookiecutter.package_name }}.sgs.metrics.scrape import (
    http_get,
)
from {{ cookiecutter.package_name }}.sgs.outcomes import (
    CloseReason,
    as_reason,
    close_labels,
    close_reason,
    reason_label,
)
from {{ cookiecutter.package_name }}.sgs.protocol import (
    get_codec,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)

TIMEOUT = 10.0
CODEC = get_codec("json", fwkit.catalog)
#: The families the outcome service feeds (sample names as the parser gives them).
OUTCOME_SERIES = (
    "sgs_errors_total",
    "sgs_links_refused_total",
    "sgs_links_closed_total",
    "sgs_protocol_errors_total",
    "sgs_handler_errors_total",
    "sgs_throttled_total",
)

router = Router()
router.include(fwkit.router)
router.limit(BagReq, 1, 1)  # a per-type limit: the second BagReq in a second is refused

Key = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def errors(code: str) -> Key:
    return key("sgs_errors_total", code=code)


def closed(reason: str) -> Key:
    return key("sgs_links_closed_total", reason=reason)


def refused(reason: str) -> Key:
    return key("sgs_links_refused_total", reason=reason)


PROTOCOL = key("sgs_protocol_errors_total")
HANDLER = key("sgs_handler_errors_total")
THROTTLED = key("sgs_throttled_total")


def echo(seq: int = 1, text: str = "x") -> bytes:
    return CODEC.encode_frame(EchoReq(seq=seq, text=text))


def bag_req() -> bytes:
    return CODEC.encode_frame(BagReq(bag=fwkit.Bag(owner="o", items=[], tags=[])))


class Probe(Protocol):
    """One client connection, TCP or WebSocket: send bytes, read frames, see the close."""

    async def send(self, data: bytes) -> None: ...

    async def frame(self) -> tuple[int, bytes]: ...

    async def wait_closed(self) -> None: ...

    async def close(self) -> None: ...


class TcpProbe:
    def __init__(self, conn: RawConn) -> None:
        self.conn = conn

    async def send(self, data: bytes) -> None:
        self.conn.send(data)

    async def frame(self) -> tuple[int, bytes]:
        return await self.conn.read_frame(TIMEOUT)

    async def wait_closed(self) -> None:
        rest = await self.conn.read_eof(TIMEOUT)
        assert rest == b"", f"bytes after the last frame: {rest!r}"

    async def close(self) -> None:
        await self.conn.close()


class WsProbe:
    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.pending: list[tuple[int, bytes]] = []

    async def send(self, data: bytes) -> None:
        self.peer.send(data)

    async def frame(self) -> tuple[int, bytes]:
        if not self.pending:
            self.pending = await self.peer.frames(1, TIMEOUT)
        return self.pending.pop(0)

    async def wait_closed(self) -> None:
        await self.peer.closed(TIMEOUT)

    async def close(self) -> None:
        transport = self.peer.transport
        transport.send_close(WSCloseCode.OK)
        transport.disconnect()
        await self.peer.closed(TIMEOUT)


async def connect(server: Server, transport: str, **kwargs: Any) -> Probe:
    if transport == "tcp":
        return TcpProbe(await RawConn.open(server.port))
    return WsProbe(await ws_peer(server.ws_port, **kwargs))


@dataclass
class Case:
    """A bad input, what the client must get back, and the series that must move by one."""

    name: str
    send: Callable[[Probe], Awaitable[None]] | None  # None: the connection itself is the input
    error: str | None  # the code of the Error the client receives last, or None: no Error
    closed_by_server: bool
    moved: dict[Key, int]
    settings: dict[str, Any] = field(default_factory=dict)
    replies: int = 0  # ordinary replies before the Error
    transports: tuple[str, ...] = ("tcp", "ws")
    holders: int = 0  # links opened first (they fill the server or the address)


def sender(*chunks: bytes, gap: float = 0.0) -> Callable[[Probe], Awaitable[None]]:
    async def send(probe: Probe) -> None:
        for chunk in chunks:
            await probe.send(chunk)
            if gap:
                await asyncio.sleep(gap)

    return send


CASES = [
    Case(
        "unknown_message",
        sender(fwkit.frame(4242, b"{}")),
        "unknown_message",
        False,
        {errors("unknown_message"): 1, PROTOCOL: 1, closed("remote_close"): 1},
    ),
    Case(
        "no_handler",
        sender(fwkit.frame(8, b"{}")),  # PongResp: in the catalogue, no handler
        "no_handler",
        False,
        {errors("no_handler"): 1, PROTOCOL: 1, closed("remote_close"): 1},
    ),
    Case(
        "decode_error",
        sender(fwkit.frame(EchoReq.__msg_id__, b"{not json")),
        "decode_error",
        False,
        {errors("decode_error"): 1, PROTOCOL: 1, closed("remote_close"): 1},
    ),
    Case(
        "decode_error_close_policy",
        sender(fwkit.frame(EchoReq.__msg_id__, b"[1, 2]")),
        "decode_error",
        True,
        {errors("decode_error"): 1, PROTOCOL: 1, closed("protocol_error"): 1},
        settings={"protocol_error_policy": "close"},
    ),
    Case(
        "frame_too_large",
        sender(fwkit.HEADER.pack(EchoReq.__msg_id__, 5000)),  # a header alone
        "frame_too_large",
        True,
        {errors("frame_too_large"): 1, PROTOCOL: 1, closed("protocol_error"): 1},
        settings={"max_frame_size": 1024},
    ),
    Case(
        "handler_crashed",
        sender(CODEC.encode_frame(BoomReq())),
        "internal",
        False,
        {errors("internal"): 1, HANDLER: 1, closed("remote_close"): 1},
    ),
    Case(
        "handler_crashed_close_policy",
        sender(CODEC.encode_frame(BoomReq())),
        "internal",
        True,
        {errors("internal"): 1, HANDLER: 1, closed("handler_error"): 1},
        settings={"handler_error_policy": "close"},
    ),
    Case(
        "handler_refused",
        sender(CODEC.encode_frame(DenyReq())),
        "denied",
        False,
        {errors("denied"): 1, closed("remote_close"): 1},
    ),
    Case(
        "kicked",
        sender(CODEC.encode_frame(KickReq())),
        None,
        True,
        {closed("kicked"): 1},
        replies=1,
    ),
    Case(
        "message_budget",
        sender(echo(1) + echo(2)),  # one read, two messages, a budget of one
        "rate_limited",
        False,
        {errors("rate_limited"): 1, THROTTLED: 1, closed("remote_close"): 1},
        settings={"rate_limit_messages": 1.0, "rate_limit_messages_burst": 1},
        replies=1,
    ),
    Case(
        "message_budget_close_policy",
        sender(echo(1) + echo(2)),
        "rate_limited",
        True,
        {errors("rate_limited"): 1, THROTTLED: 1, closed("rate_limited"): 1},
        settings={
            "rate_limit_messages": 1.0,
            "rate_limit_messages_burst": 1,
            "rate_limit_policy": "close",
        },
        replies=1,
    ),
    Case(
        "byte_budget",  # slowed down, never answered with an Error
        sender(echo(1, "a" * 150), echo(2, "b" * 150)),
        None,
        False,
        {THROTTLED: 1, closed("remote_close"): 1},
        settings={
            "rate_limit_bytes": 2000.0,
            "rate_limit_bytes_burst": 300,
            "max_frame_size": 256,
        },
        replies=2,
    ),
    Case(
        "type_limit",
        sender(bag_req() + bag_req()),
        "rate_limited",
        False,
        {errors("rate_limited"): 1, closed("remote_close"): 1},
        replies=1,
    ),
    Case(
        "idle_timeout",
        None,
        "idle_timeout",
        True,
        {errors("idle_timeout"): 1, closed("idle_timeout"): 1},
        settings={"idle_timeout": 0.3},
    ),
    Case(
        "frame_timeout",
        sender(echo()[:-2]),  # the header and most of the value, never the rest
        "frame_timeout",
        True,
        {errors("frame_timeout"): 1, closed("frame_timeout"): 1},
        settings={"frame_timeout": 0.3},
        transports=("tcp",),  # a WebSocket message ending inside a frame is partial_frame
    ),
    Case(
        "server_full",
        None,
        "server_full",
        True,
        {errors("server_full"): 1, refused("full"): 1},
        settings={"max_connections": 1},
        holders=1,
    ),
    Case(
        "too_many_connections",
        None,
        "too_many_connections",
        True,
        {errors("too_many_connections"): 1, refused("max_connections_per_ip"): 1},
        settings={"max_connections_per_ip": 1},
        holders=1,
    ),
    Case(
        "accept_rate",  # a flood: cut without a word
        None,
        None,
        True,
        {refused("accept_rate"): 1},
        settings={"accept_rate": 0.001, "accept_burst": 1},
        holders=1,
    ),
    Case(
        "ws_partial_frame",
        sender(echo()[:-3]),
        "partial_frame",
        True,
        {errors("partial_frame"): 1, PROTOCOL: 1, closed("protocol_error"): 1},
        transports=("ws",),
    ),
]


async def ws_text(probe: Probe) -> None:
    assert isinstance(probe, WsProbe)
    probe.peer.send(b"hello", WSMsgType.TEXT)


async def ws_too_big(probe: Probe) -> None:
    await probe.send(b"\x00" * 3000)  # above max_frame_size + header: picows refuses it


CASES += [
    Case(
        "ws_text_message",
        ws_text,
        None,
        True,
        {PROTOCOL: 1, closed("protocol_error"): 1},
        transports=("ws",),
    ),
    Case(
        "ws_message_too_big",
        ws_too_big,
        None,
        True,
        {PROTOCOL: 1, closed("protocol_error"): 1},
        settings={"max_frame_size": 1024},
        transports=("ws",),
    ),
]


async def scrape(server: Server) -> dict[Key, float]:
    address = server.metrics.address
    assert address is not None
    status, body = await asyncio.to_thread(
        http_get, f"http://127.0.0.1:{address[1]}/metrics", TIMEOUT
    )
    assert status == 200, body
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name in OUTCOME_SERIES:
                samples[key(s.name, **s.labels)] = s.value
    return samples


def moved(before: dict[Key, float], after: dict[Key, float]) -> dict[Key, int]:
    keys = before.keys() | after.keys()
    diff = {k: int(after.get(k, 0) - before.get(k, 0)) for k in keys}
    return {k: v for k, v in diff.items() if v}


async def settled(server: Server, before: dict[Key, float], want: dict[Key, int]) -> None:
    """Poll /metrics until the outcome series moved as ``want`` says; then once more, later."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    got: dict[Key, int] = {}
    while asyncio.get_running_loop().time() < deadline:
        got = moved(before, await scrape(server))
        if got == want:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # nothing may be counted twice, a little later
    assert moved(before, await scrape(server)) == want


@contextlib.asynccontextmanager
async def serving(case: Case) -> AsyncIterator[Server]:
    settings = {
        "protocol": "json",
        "metrics_port": free_port(),
        "metrics_host": "127.0.0.1",
        "ws_port": free_port(),
        "idle_timeout": 0.0,
        "frame_timeout": 0.0,
        **case.settings,
    }
    async with running_server(router, catalog=fwkit.catalog, **settings) as server:
        yield server


@pytest.mark.parametrize(
    ("case", "transport"),
    [pytest.param(c, t, id=f"{c.name}-{t}") for c in CASES for t in c.transports],
)
async def test_bad_input_is_answered_closed_and_counted_once(case: Case, transport: str) -> None:
    async with serving(case) as server:
        holders = [await connect(server, transport) for _ in range(case.holders)]
        for holder in holders:  # accepted and attached before the probe is counted
            await holder.send(echo(0))
            await holder.frame()
        before = await scrape(server)
        probe = await connect(server, transport)
        if case.send is not None:
            await case.send(probe)
        frames = [await probe.frame() for _ in range(case.replies)]
        assert all(msg_id != Error.__msg_id__ for msg_id, _ in frames), frames
        if case.error is not None:
            msg_id, value = await probe.frame()
            assert msg_id == Error.__msg_id__, (msg_id, value)
            assert CODEC.decode(msg_id, value).code == case.error
        if case.closed_by_server:
            await probe.wait_closed()
        else:
            await probe.close()
        await settled(server, before, case.moved)
        for holder in holders:
            await holder.close()


async def test_refused_origin_counts_as_refused() -> None:
    case = Case("origin", None, None, True, {refused("origin"): 1})
    case.settings = {"ws_allowed_origins": ["http://game.example"]}
    async with serving(case) as server:
        before = await scrape(server)
        with pytest.raises(WSHandshakeError):
            await ws_peer(server.ws_port, extra_headers={"Origin": "http://evil.example"})
        await settled(server, before, case.moved)


GAME_CODEC = get_codec("json", game_catalog)


@contextlib.asynccontextmanager
async def sample_game(**overrides: Any) -> AsyncIterator[Server]:
    """The sample game (its own close reasons and Error codes), metrics on."""
    settings = Settings(
        store_url="memory://",
        protocol="json",
        metrics_port=free_port(),
        metrics_host="127.0.0.1",
        ws_port=free_port(),
        idle_timeout=0.0,
        **overrides,
    )
    async with running_server(
        handlers.router, game_catalog, setup=handlers.setup, settings=settings
    ) as server:
        yield server


async def login(probe: Probe, account: str) -> None:
    await probe.send(GAME_CODEC.encode_frame(LoginReq(account_id=account)))
    msg_id, value = await probe.frame()
    assert isinstance(GAME_CODEC.decode(msg_id, value), LoginResp)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_login_timeout_of_the_sample_game_is_counted(transport: str) -> None:
    async with sample_game(auth_timeout=0.3) as server:
        before = await scrape(server)
        probe = await connect(server, transport)
        msg_id, value = await probe.frame()
        assert GAME_CODEC.decode(msg_id, value).code == "login_timeout"
        await probe.wait_closed()
        await settled(server, before, {errors("login_timeout"): 1, closed("login_timeout"): 1})


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_replaced_login_of_the_sample_game_is_counted(transport: str) -> None:
    async with sample_game(auth_timeout=0.0) as server:
        before = await scrape(server)
        old = await connect(server, transport)
        await login(old, "ann")
        new = await connect(server, transport)
        await login(new, "ann")
        msg_id, value = await old.frame()
        assert GAME_CODEC.decode(msg_id, value).code == "replaced"
        await old.wait_closed()
        await new.close()
        await settled(
            server,
            before,
            {errors("replaced"): 1, closed("replaced"): 1, closed("remote_close"): 1},
        )


def test_close_reasons_are_registered_not_free_strings() -> None:
    with pytest.raises(ValueError, match="not registered"):
        as_reason("left_in_a_huff")
    banned = close_reason("banned")
    assert close_reason("banned") is banned
    assert as_reason("banned") is banned and reason_label(banned) == "banned"
    assert "banned" in close_labels()  # exported at 0 from now on
    assert close_reason("kicked") is CloseReason.KICKED  # the framework's own stays an enum
    assert reason_label(CloseReason.REMOTE) == "remote_close"
    with pytest.raises(ValueError, match="a-z"):
        close_reason("Not A Label")
