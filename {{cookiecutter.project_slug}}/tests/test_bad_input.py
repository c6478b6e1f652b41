"""Bad input: each case gets its own specific outcome, and a bystander stays served."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import fwkit
from fwkit import BoomReq, DenyReq, EchoReq, KickReq, RawConn, frame
from testkit import until

from {{ cookiecutter.package_name }}.sgs import (
    Client,
    CloseReason,
    Link,
    RemoteError,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.builtins import ERROR_ID
from {{ cookiecutter.package_name }}.sgs.testing import running_server

MODELS = fwkit.MODELS


@contextlib.asynccontextmanager
async def serving(
    model: str = "shared_all", **settings: Any
) -> AsyncIterator[tuple[Server, list[Link]]]:
    closed: list[Link] = []

    def setup(server: Server) -> None:
        server.on_disconnect(closed.append)

    async with running_server(
        fwkit.router, fwkit.catalog, setup=setup, resource_model=model, **settings
    ) as server:
        yield server, closed


async def bystander_is_served(server: Server) -> None:
    protocol = server.settings.protocol
    async with Client("127.0.0.1", server.port or 0, protocol=protocol, catalog=fwkit.catalog) as c:
        for k in range(3):
            reply = await c.request(EchoReq(seq=k, text="still here"), timeout=5)
            assert reply.seq == k and reply.text == "still here"


def error_of(value: bytes) -> dict[str, Any]:
    return json.loads(value)


@pytest.mark.parametrize("model", MODELS)
async def test_oversized_length_gets_error_and_close(model: str) -> None:
    async with serving(model, max_frame_size=1024) as (server, closed):
        bystander = await Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog).connect()
        raw = await RawConn.open(server.port or 0)
        ok = frame(EchoReq.__msg_id__, b'{"seq":1,"text":"a"}')
        raw.send(ok + (1001).to_bytes(4, "big") + (10**9).to_bytes(4, "big"))
        msg_id, value = await raw.read_frame()
        assert msg_id == EchoReq.__reply__.__msg_id__  # the frame before still answered
        msg_id, value = await raw.read_frame()
        assert msg_id == ERROR_ID
        err = error_of(value)
        assert err["code"] == "frame_too_large" and err["msg_id"] == 1001
        assert await raw.read_eof() == b""
        await until(lambda: len(closed) == 1)
        assert closed[0].close_reason is CloseReason.PROTOCOL_ERROR
        assert (await bystander.request(EchoReq(seq=7, text="b"))).seq == 7
        await bystander.close()
        await raw.close()


@pytest.mark.parametrize("model", MODELS)
async def test_garbage_bytes_close_only_that_link(model: str) -> None:
    async with serving(model) as (server, closed):
        raw = await RawConn.open(server.port or 0)
        raw.send(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n" + bytes(range(256)) * 4)
        data = await raw.read_eof()
        # "GET " is read as msg id 0x47455420 with an absurd length: a framing error.
        assert data[:4] == ERROR_ID.to_bytes(4, "big")
        assert error_of(data[8:])["code"] == "frame_too_large"
        await bystander_is_served(server)
        await raw.close()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("protocol", fwkit.PROTOCOLS)
async def test_unknown_id_is_answered_and_link_kept(model: str, protocol: str) -> None:
    async with running_server(
        fwkit.router, fwkit.catalog, resource_model=model, protocol=protocol
    ) as server:
        async with Client(
            "127.0.0.1", server.port or 0, protocol=protocol, catalog=fwkit.catalog
        ) as c:
            errors: list[Any] = []
            c.on(fwkit.catalog[99], errors.append)
            c.send_raw(frame(4242, b"whatever"))
            reply = await c.request(EchoReq(seq=1, text="after"))
            assert reply.seq == 1  # same link, still open, order kept
            assert [(e.code, e.msg_id) for e in errors] == [("unknown_message", 4242)]
            assert protocol in errors[0].message
        await bystander_is_served(server)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("protocol", fwkit.PROTOCOLS)
async def test_undecodable_value_is_answered_and_link_kept(model: str, protocol: str) -> None:
    async with running_server(
        fwkit.router, fwkit.catalog, resource_model=model, protocol=protocol
    ) as server:
        async with Client(
            "127.0.0.1", server.port or 0, protocol=protocol, catalog=fwkit.catalog
        ) as c:
            with pytest.raises(RemoteError) as err:
                c.send_raw(frame(EchoReq.__msg_id__, b"\xff\xfe\x00garbage\x01"))
                # The Error answers the broken EchoReq, so a request right after it gets it.
                await c.request(EchoReq(seq=1, text="x"))
            assert err.value.code == "decode_error"
            assert err.value.error.msg_id == EchoReq.__msg_id__
            assert (await c.request(EchoReq(seq=2, text="y"))).seq == 2


async def test_protocol_error_policy_close() -> None:
    async with serving(protocol_error_policy="close") as (server, closed):
        raw = await RawConn.open(server.port or 0)
        raw.send(frame(4242, b""))
        msg_id, value = await raw.read_frame()
        assert msg_id == ERROR_ID and error_of(value)["code"] == "unknown_message"
        assert await raw.read_eof() == b""
        await until(lambda: len(closed) == 1)
        assert closed[0].close_reason is CloseReason.PROTOCOL_ERROR
        await bystander_is_served(server)


@pytest.mark.parametrize("model", MODELS)
async def test_raising_handler_answers_error_and_keeps_link(model: str, caplog: Any) -> None:
    async with serving(model) as (server, closed):
        async with Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog) as c:
            with pytest.raises(RemoteError) as err:
                await c.request(BoomReq())
            assert err.value.code == "internal"
            assert err.value.error.msg_id == BoomReq.__msg_id__
            with pytest.raises(RemoteError) as denied:
                await c.request(DenyReq())
            assert (denied.value.code, denied.value.error.message) == ("denied", "you may not")
            assert (await c.request(EchoReq(seq=3, text="ok"))).seq == 3
        assert "a handler bug" in caplog.text  # logged with its traceback
        assert server.stats.handler_errors == 1


async def test_handler_error_policy_close() -> None:
    async with serving(handler_error_policy="close") as (server, closed):
        async with Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog) as c:
            with pytest.raises(RemoteError):
                await c.request(BoomReq())
            await asyncio.wait_for(c.wait_closed(), 5)
        await until(lambda: len(closed) == 1)
        assert closed[0].close_reason is CloseReason.HANDLER_ERROR
        await bystander_is_served(server)


@pytest.mark.parametrize("model", MODELS)
async def test_disconnect_in_the_middle_of_a_frame(model: str) -> None:
    async with serving(model) as (server, closed):
        raw = await RawConn.open(server.port or 0)
        whole = frame(EchoReq.__msg_id__, b'{"seq":1,"text":"abc"}')
        raw.send(whole + whole[:11])
        msg_id, _ = await raw.read_frame()
        assert msg_id == EchoReq.__reply__.__msg_id__
        await raw.close()
        await until(lambda: len(closed) == 1)
        assert closed[0].close_reason is CloseReason.REMOTE
        assert server.links == {}
        await bystander_is_served(server)


@pytest.mark.parametrize("model", MODELS)
async def test_client_that_never_reads_is_closed_for_send_overflow(model: str) -> None:
    async with serving(model, send_buffer_size=64 * 1024) as (server, closed):
        raw = await RawConn.open(server.port or 0, rcvbuf=4096)
        big = "x" * 16000
        request = frame(EchoReq.__msg_id__, json.dumps({"seq": 0, "text": big}).encode())
        for _ in range(400):  # ~6 MB of replies that are never read
            raw.send(request)
            if closed:
                break
            await asyncio.sleep(0)
        await until(lambda: len(closed) == 1, timeout=10)
        assert closed[0].close_reason is CloseReason.SEND_OVERFLOW
        await bystander_is_served(server)
        raw.writer.transport.abort()


async def test_drop_policy_drops_and_counts() -> None:
    async with serving(send_buffer_size=64 * 1024, send_overflow="drop") as (server, closed):
        raw = await RawConn.open(server.port or 0, rcvbuf=4096)
        request = frame(EchoReq.__msg_id__, json.dumps({"seq": 0, "text": "x" * 16000}).encode())
        for _ in range(300):
            raw.send(request)
            await asyncio.sleep(0)
        await until(lambda: server.stats.dropped > 0, timeout=10)
        assert closed == [] and len(server.links) == 1  # dropped, not closed
        await bystander_is_served(server)
        raw.writer.transport.abort()


@pytest.mark.parametrize("model", MODELS)
async def test_idle_link_is_closed_and_keepalive_is_not(model: str) -> None:
    async with serving(model, idle_timeout=0.3) as (server, closed):
        alive = await Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog).connect()
        alive.keepalive(0.05)
        raw = await RawConn.open(server.port or 0)
        data = await raw.read_eof(timeout=5)
        assert data[:4] == ERROR_ID.to_bytes(4, "big")
        assert error_of(data[8:])["code"] == "idle_timeout"
        await until(lambda: len(closed) == 1)
        assert closed[0].close_reason is CloseReason.IDLE_TIMEOUT
        await asyncio.sleep(0.4)
        assert alive.connected
        assert (await alive.request(EchoReq(seq=5, text="alive"))).seq == 5
        await alive.close()
        await raw.close()


async def test_connection_beyond_max_connections_is_refused_clearly() -> None:
    async with serving(max_connections=2) as (server, closed):
        first = await Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog).connect()
        second = await Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog).connect()
        await first.ping()
        await second.ping()
        raw = await RawConn.open(server.port or 0)
        data = await raw.read_eof()
        assert data[:4] == ERROR_ID.to_bytes(4, "big")
        assert error_of(data[8:])["code"] == "server_full"
        assert server.stats.refused == 1
        for c in (first, second):
            assert (await c.request(EchoReq(seq=1, text="ok"))).seq == 1
        await first.close()
        await until(lambda: len(server.links) == 1)
        await bystander_is_served(server)  # a slot is free again
        await second.close()
        await raw.close()


@pytest.mark.parametrize("model", MODELS)
async def test_kick_flushes_reply_first(model: str) -> None:
    async with serving(model) as (server, closed):
        async with Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog) as c:
            reply = await c.request(KickReq())
            assert reply.text == "bye"
            await asyncio.wait_for(c.wait_closed(), 5)
        await until(lambda: len(closed) == 1)
        assert closed[0].close_reason == "kicked"
