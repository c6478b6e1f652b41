"""Routes: plain and async handlers, checks and middleware, the worker's slow-handler warning.

Plain ``def`` handlers run without a coroutine, and a read whose worker is
idle is handled where it arrived; none of that may change what a client
sees: replies in request order, one handler at a time per worker, checks and
middleware in the declared order.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import fwkit
from fwkit import DenyReq, EchoReq, EchoResp, RawConn, SlowReq

from {{ cookiecutter.package_name }}.sgs import (
    Context,
    HandlerError,
    Message,
    Router,
    timing_middleware,
)
from {{ cookiecutter.package_name }}.sgs.builtins import Error
from {{ cookiecutter.package_name }}.sgs.connector import FrameDecoder
from {{ cookiecutter.package_name }}.sgs.middleware import (
    Handler,
    compose,
    layer,
)
from {{ cookiecutter.package_name }}.sgs.protocol import get_codec
from {{ cookiecutter.package_name }}.sgs.testing import (
    StandInTransport,
    running_server,
    stand_in_link,
)

codec = get_codec("json", fwkit.catalog)


def plain_router(trace: list[str] | None = None) -> Router:
    """Echo as a plain def, SlowReq as an async def that really awaits."""
    router = Router()

    @router.on(EchoReq)
    def echo(ctx: Context, msg: EchoReq) -> EchoResp:
        if trace is not None:
            trace.append(f"echo {msg.seq}")
        return EchoResp(seq=msg.seq, text=msg.text)

    @router.on(SlowReq)
    async def slow(ctx: Context, msg: SlowReq) -> EchoResp:
        if trace is not None:
            trace.append(f"slow {msg.seq} start")
        await asyncio.sleep(msg.delay)
        if trace is not None:
            trace.append(f"slow {msg.seq} end")
        return EchoResp(seq=msg.seq, text="slow")

    return router


async def replies(conn: RawConn, n: int) -> list[Message]:
    out = []
    for _ in range(n):
        msg_id, value = await conn.read_frame()
        out.append(codec.decode(msg_id, value))
    return out


@pytest.mark.parametrize("model", fwkit.MODELS)
async def test_plain_and_async_handlers_in_one_read_answer_in_order(model: str) -> None:
    requests: list[Message] = [
        EchoReq(seq=0, text="a"),
        SlowReq(seq=1, delay=0.02),
        EchoReq(seq=2, text="b"),
        EchoReq(seq=3, text="c"),
        SlowReq(seq=4, delay=0.0),
        EchoReq(seq=5, text="d"),
    ]
    async with running_server(plain_router(), fwkit.catalog, resource_model=model) as server:
        conn = await RawConn.open(server.port or 0)
        for _ in range(3):  # one write: the inline pass hands over to the worker task
            conn.send(b"".join(codec.encode_frame(m) for m in requests))
            got = await replies(conn, len(requests))
            assert [m.seq for m in got] == list(range(6))  # type: ignore[attr-defined]
            assert [m.text for m in got] == ["a", "slow", "b", "c", "slow", "d"]  # type: ignore[attr-defined]
        await conn.close()


async def test_an_awaiting_handler_holds_its_worker_for_every_link() -> None:
    """While a handler awaits, another link's plain request on that worker waits for it."""
    trace: list[str] = []
    async with running_server(
        plain_router(trace), fwkit.catalog, resource_model="shared_all", logic_workers=1
    ) as server:
        first, second = await RawConn.open(server.port or 0), await RawConn.open(server.port or 0)
        first.send(codec.encode_frame(SlowReq(seq=1, delay=0.1)))
        for _ in range(100):
            if trace:
                break
            await asyncio.sleep(0.005)
        second.send(codec.encode_frame(EchoReq(seq=2, text="waits")))
        assert [m.seq for m in await replies(second, 1)] == [2]  # type: ignore[attr-defined]
        assert [m.seq for m in await replies(first, 1)] == [1]  # type: ignore[attr-defined]
        assert trace == ["slow 1 start", "slow 1 end", "echo 2"]
        await first.close()
        await second.close()


async def test_checks_and_middleware_run_in_the_declared_order() -> None:
    trace: list[str] = []
    router = Router()

    def outer_check(ctx: Context, msg: Message) -> None:
        trace.append("outer check")

    async def middleware(ctx: Context, msg: Message, call_next: Handler) -> Message | None:
        trace.append("middleware before")
        reply = await call_next(ctx, msg)
        trace.append("middleware after")
        return reply

    def inner_check(ctx: Context, msg: Message) -> None:
        trace.append("inner check")
        if isinstance(msg, DenyReq):
            raise HandlerError("denied", "not you")

    router.use(outer_check)
    router.use(middleware)
    router.use(inner_check)

    @router.on(EchoReq)
    def echo(ctx: Context, msg: EchoReq) -> EchoResp:
        trace.append("handler")
        return EchoResp(seq=msg.seq, text=msg.text)

    @router.on(DenyReq)
    def deny(ctx: Context, msg: DenyReq) -> EchoResp:
        trace.append("deny handler")  # never: the check refuses first
        return EchoResp(seq=0, text="")

    async with running_server(router, fwkit.catalog) as server:
        conn = await RawConn.open(server.port or 0)
        conn.send(codec.encode_frame(EchoReq(seq=1, text="x")) + codec.encode_frame(DenyReq()))
        echoed, denied = await replies(conn, 2)
        assert echoed == EchoResp(seq=1, text="x")
        assert isinstance(denied, Error) and denied.code == "denied"
        assert denied.msg_id == DenyReq.__msg_id__
        assert trace == [
            "outer check",
            "middleware before",
            "inner check",
            "handler",
            "middleware after",
            "outer check",
            "middleware before",
            "inner check",
        ]
        assert server.stats.errors == {"denied": 1}
        await conn.close()


def test_a_route_is_plain_until_middleware_wraps_it() -> None:
    def handler(ctx: Context, msg: Message) -> None:
        return None

    async def async_handler(ctx: Context, msg: Message) -> None:
        return None

    def check(ctx: Context, msg: Message) -> None:
        return None

    async def middleware(ctx: Context, msg: Message, call_next: Handler) -> Message | None:
        return await call_next(ctx, msg)  # type: ignore[no-any-return]

    assert compose(handler, []).is_async is False
    assert compose(handler, [layer(check), layer(check)]).is_async is False
    assert compose(async_handler, [layer(check)]).is_async is True
    assert compose(handler, [layer(check), layer(middleware)]).is_async is True
    timed = compose(handler, [layer(timing_middleware(25)), layer(check)])
    assert timed.is_async is False and timed.slow == pytest.approx(0.025)


def test_use_refuses_what_is_neither_middleware_nor_a_check() -> None:
    router = Router()

    async def awaiting_check(ctx: Context, msg: Message) -> None:
        return None

    with pytest.raises(TypeError, match="awaiting_check: a check never awaits"):
        router.use(awaiting_check)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="middleware is `async def mw"):
        router.use(lambda ctx: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slow_ms"):
        timing_middleware(0)


async def test_the_worker_warns_about_slow_runs(caplog: pytest.LogCaptureFixture) -> None:
    router = Router()
    router.use(timing_middleware(slow_ms=20))

    @router.on(EchoReq)
    def blocking(ctx: Context, msg: EchoReq) -> EchoResp:
        if msg.text == "block":
            time.sleep(0.03)  # holds the worker, and every link on it
        return EchoResp(seq=msg.seq, text=msg.text)

    @router.on(SlowReq)
    async def slow(ctx: Context, msg: SlowReq) -> EchoResp:
        await asyncio.sleep(msg.delay)
        return EchoResp(seq=msg.seq, text="slow")

    caplog.set_level(logging.WARNING, logger="sgs.dispatcher")
    async with running_server(router, fwkit.catalog) as server:
        conn = await RawConn.open(server.port or 0)
        conn.send(codec.encode_frame(EchoReq(seq=1, text="fast")))
        await replies(conn, 1)
        assert not caplog.records  # fast calls cost no warning
        conn.send(codec.encode_frame(EchoReq(seq=2, text="block")))
        await replies(conn, 1)
        conn.send(codec.encode_frame(SlowReq(seq=3, delay=0.05)))
        await replies(conn, 1)
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 2, warned
        assert "EchoReq took" in warned[0] and "slow above 20 ms" in warned[0]
        assert "SlowReq took" in warned[1]
        assert all(r.link_id == 1 for r in caplog.records)  # type: ignore[attr-defined]
        await conn.close()


@pytest.mark.parametrize("model", fwkit.MODELS)
async def test_a_plain_handler_that_raises_costs_only_its_own_reply(
    model: str, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router()

    @router.on(EchoReq)
    def fragile(ctx: Context, msg: EchoReq) -> EchoResp:
        if msg.text == "boom":
            raise RuntimeError("a handler bug")
        return EchoResp(seq=msg.seq, text=msg.text)

    async with running_server(router, fwkit.catalog, resource_model=model) as server:
        conn = await RawConn.open(server.port or 0)
        texts = ["a", "boom", "b"]
        conn.send(b"".join(codec.encode_frame(EchoReq(seq=i, text=t)) for i, t in enumerate(texts)))
        first, failed, last = await replies(conn, 3)
        assert first == EchoResp(seq=0, text="a") and last == EchoResp(seq=2, text="b")
        assert isinstance(failed, Error) and failed.code == "internal"
        assert failed.msg_id == EchoReq.__msg_id__
        assert server.stats.handler_errors == 1
        assert any("handler for message id" in r.getMessage() for r in caplog.records)
        await conn.close()


def written(transport: StandInTransport) -> list[Message]:
    """The replies a link has written so far, decoded."""
    frames = FrameDecoder(1 << 20).feed(bytes(transport.data))
    return [codec.decode(msg_id, value) for msg_id, value in frames]


async def test_a_lone_request_is_answered_before_its_read_callback_returns() -> None:
    """When replies are written: a player waiting on one request never waits for the writer.

    The first read of a loop iteration and every read of a single frame are
    answered in the callback that delivered them; a later burst in the same
    iteration leaves its replies to the writer, which sends them before the
    loop polls again.
    """
    async with running_server(plain_router()) as server:
        links, sinks = zip(*(stand_in_link(server) for _ in range(3)), strict=True)
        burst = b"".join(codec.encode_frame(EchoReq(seq=i, text="b")) for i in range(3))
        lone = codec.encode_frame(EchoReq(seq=9, text="lone"))
        await asyncio.sleep(0.01)  # a fresh loop iteration: no read handled in it yet

        links[0].data_received(burst)  # the iteration's first read: written at once
        assert [m.seq for m in written(sinks[0])] == [0, 1, 2]  # type: ignore[attr-defined]
        links[1].data_received(burst)  # a later burst: the writer's job
        assert written(sinks[1]) == []
        links[2].data_received(lone)  # one frame: written at once, burst or not
        assert written(sinks[2]) == [EchoResp(seq=9, text="lone")]

        await asyncio.sleep(0)
        assert [m.seq for m in written(sinks[1])] == [0, 1, 2]  # type: ignore[attr-defined]
        for link in links:
            link.connection_lost(None)
