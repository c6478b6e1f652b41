"""Hostile clients meet limits: rates, admission, slow frames, links that never log in.

Each limit is switched on here with small numbers, so a test sees it bite
within a second; every test also checks that a well-behaved bystander is
still served, because a limit that harms the others is no defence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

import fwkit
from fwkit import EchoReq, RawConn, frame

from {{ cookiecutter.package_name }} import handlers
from {{ cookiecutter.package_name }}.client import GameClient
from {{ cookiecutter.package_name }}.messages import (
    Error,
    RoomMessage,
    SayReq,
    catalog,
)
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.sgs import (
    Client,
    Server,
    ServerSettings,
)
from {{ cookiecutter.package_name }}.sgs.builtins import ERROR_ID
from {{ cookiecutter.package_name }}.sgs.testing import running_server

NO_LIMITS: dict[str, Any] = {
    "rate_limit_messages": 0,
    "rate_limit_bytes": 0,
    "max_connections_per_ip": 0,
    "accept_rate": 0,
    "frame_timeout": 0,
}


@contextlib.asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[Server]:
    """The framework's echo router, json, with ``settings`` over no limits at all."""
    async with running_server(
        fwkit.router, fwkit.catalog, protocol="json", **{**NO_LIMITS, **settings}
    ) as server:
        yield server


@contextlib.asynccontextmanager
async def game(**settings: Any) -> AsyncIterator[Server]:
    """The sample game with its own Settings (chat limit, auth_timeout)."""
    base = Settings(store_url="memory://", protocol="json", **{**NO_LIMITS, **settings})
    async with running_server(
        handlers.router, catalog, setup=handlers.setup, settings=base
    ) as server:
        yield server


async def bystander_is_served(server: Server) -> None:
    async with Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog) as c:
        for k in range(3):
            reply = await c.request(EchoReq(seq=k, text="still here"), timeout=5)
            assert reply.seq == k


def echo_frame(seq: int) -> bytes:
    return frame(EchoReq.__msg_id__, json.dumps({"seq": seq, "text": "x"}).encode())


async def read_replies(raw: RawConn, n: int) -> list[tuple[int, dict[str, Any]]]:
    return [
        (msg_id, json.loads(value)) for msg_id, value in [await raw.read_frame() for _ in range(n)]
    ]


# -- per-link message and byte budgets -------------------------------------------


async def test_messages_over_the_budget_are_answered_rate_limited_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "sgs.server")
    async with serving(rate_limit_messages=20, rate_limit_messages_burst=10) as server:
        raw = await RawConn.open(server.port or 0)
        raw.send(b"".join(echo_frame(k) for k in range(60)))
        replies = await read_replies(raw, 60)
        kinds = ["ok" if msg_id != ERROR_ID else body["code"] for msg_id, body in replies]
        assert kinds[:10] == ["ok"] * 10, "the burst is served"
        assert kinds.count("rate_limited") >= 40, kinds
        assert set(kinds) <= {"ok", "rate_limited"}
        for msg_id, body in replies:
            if msg_id == ERROR_ID:
                assert body["msg_id"] == EchoReq.__msg_id__, "the Error names the message id"
        served = [body["seq"] for msg_id, body in replies if msg_id != ERROR_ID]
        assert served == sorted(served), "what was served kept its order"
        assert server.stats.rate_limited == kinds.count("rate_limited")
        await bystander_is_served(server)
        # the budget refills: the same link is served again after a pause
        await asyncio.sleep(0.6)
        raw.send(echo_frame(1000))
        msg_id, body = await raw.read_frame()
        assert msg_id != ERROR_ID and json.loads(body)["seq"] == 1000
        await raw.close()
    bites = [r for r in caplog.records if "rate limit" in r.getMessage()]
    assert len(bites) == 1, "logged once per link, not once per message"


async def test_close_policy_closes_the_link_after_one_error() -> None:
    async with serving(
        rate_limit_messages=5, rate_limit_messages_burst=5, rate_limit_policy="close"
    ) as server:
        raw = await RawConn.open(server.port or 0)
        raw.send(b"".join(echo_frame(k) for k in range(30)))
        rest = await raw.read_eof()
        assert b'"rate_limited"' in rest
        assert rest.count(b'"rate_limited"') == 1
        await bystander_is_served(server)


async def test_the_byte_budget_slows_a_sender_down_without_errors() -> None:
    async with serving(
        max_frame_size=2048, rate_limit_bytes=20_000, rate_limit_bytes_burst=4096
    ) as server:
        raw = await RawConn.open(server.port or 0)
        payload = json.dumps({"seq": 0, "text": "y" * 900}).encode()
        started = time.monotonic()
        raw.send(frame(EchoReq.__msg_id__, payload) * 40)  # about 36 KB
        replies = await read_replies(raw, 40)
        elapsed = time.monotonic() - started
        assert all(msg_id != ERROR_ID for msg_id, _ in replies), "bytes never cost an Error"
        assert elapsed >= 1.0, f"36 KB at 20 KB/s after a 4 KB burst took only {elapsed:.2f}s"
        assert server.stats.throttled >= 1
        await bystander_is_served(server)
        await raw.close()


# -- per-message-type limits (the sample game's chat) ----------------------------


async def test_chat_is_limited_per_link_and_other_messages_are_not() -> None:
    async with game(chat_rate_limit=2, chat_rate_burst=3) as server:
        async with GameClient("127.0.0.1", server.port or 0) as ann:
            errors: list[Error] = []
            heard: list[RoomMessage] = []
            ann.on_error(errors.append)
            ann.on_room_message(heard.append)
            await ann.login("ann")
            await ann.join("lobby")
            for k in range(4):  # SayReq has no reply: an over-limit one is answered Error
                await ann.say(f"hello {k}")
            assert await ann.echo("echo is not limited") == "echo is not limited"
            assert [e.code for e in errors] == ["rate_limited"]
            assert errors[0].msg_id == SayReq.__msg_id__
            assert [m.text for m in heard] == ["hello 0", "hello 1", "hello 2"]
            await asyncio.sleep(0.6)
            await ann.say("the budget refilled")
            assert await ann.echo("sync") == "sync"
            assert heard[-1].text == "the budget refilled"
        assert server.stats.rate_limited == 1


async def test_chat_limit_zero_switches_it_off() -> None:
    async with game(chat_rate_limit=0) as server:
        async with GameClient("127.0.0.1", server.port or 0) as ann:
            await ann.login("ann")
            await ann.join("lobby")
            for k in range(30):
                await ann.say(f"hello {k}")
        assert server.stats.rate_limited == 0


# -- admission ---------------------------------------------------------------------


async def test_max_connections_per_ip_refuses_the_extra_link_then_admits_again() -> None:
    async with serving(max_connections_per_ip=2) as server:
        first = await RawConn.open(server.port or 0)
        second = await RawConn.open(server.port or 0)
        third = await RawConn.open(server.port or 0)
        refused = await third.read_eof()
        assert b"too_many_connections" in refused
        assert server.stats.refused_by["max_connections_per_ip"] == 1
        first.send(echo_frame(1))
        assert (await first.read_frame())[0] != ERROR_ID
        await first.close()
        for _ in range(200):  # the close reaches the server
            if len(server.links) == 1:
                break
            await asyncio.sleep(0.01)
        again = await RawConn.open(server.port or 0)
        again.send(echo_frame(2))
        assert (await again.read_frame())[0] != ERROR_ID
        await again.close()
        await second.close()


async def test_a_connection_flood_is_refused_and_open_links_stay_served() -> None:
    async with serving(accept_rate=5, accept_burst=5) as server:
        async with Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog) as player:
            flood = []
            for _ in range(40):
                with contextlib.suppress(OSError):
                    flood.append(await RawConn.open(server.port or 0))
            for _ in range(200):
                if server.stats.refused_by.get("accept_rate", 0) >= 30:
                    break
                await asyncio.sleep(0.01)
            assert server.stats.refused_by.get("accept_rate", 0) >= 30
            reply = await player.request(EchoReq(seq=7, text="during the flood"), timeout=5)
            assert reply.seq == 7
            for conn in flood:
                await conn.close()


# -- slow frames and links that never log in -------------------------------------


async def test_a_trickled_frame_is_closed_after_frame_timeout() -> None:
    async with serving(frame_timeout=0.4) as server:
        raw = await RawConn.open(server.port or 0)
        raw.send((EchoReq.__msg_id__).to_bytes(4, "big") + (100).to_bytes(4, "big") + b"{")

        async def trickle() -> None:
            with contextlib.suppress(OSError, ConnectionError):
                for _ in range(40):  # one byte every 0.1 s: never a whole frame in time
                    raw.send(b" ")
                    await asyncio.sleep(0.1)

        dripping = asyncio.create_task(trickle())
        received = b""
        with contextlib.suppress(ConnectionResetError):  # the close may reset unread drips
            received = await raw.read_eof(timeout=5)
        dripping.cancel()
        assert server.stats.frame_timeouts == 1
        assert not received or b"frame_timeout" in received
        assert not server.links, "the link is gone"
        await bystander_is_served(server)


async def test_whole_frames_sent_slowly_are_not_a_frame_timeout() -> None:
    async with serving(frame_timeout=0.3) as server:
        raw = await RawConn.open(server.port or 0)
        for k in range(8):  # 0.8 s of traffic, every frame whole
            raw.send(echo_frame(k))
            assert (await raw.read_frame())[0] != ERROR_ID
            await asyncio.sleep(0.1)
        assert server.stats.frame_timeouts == 0
        await raw.close()


async def test_a_link_that_never_logs_in_is_closed_after_auth_timeout() -> None:
    async with game(auth_timeout=0.5) as server:
        lurker = await RawConn.open(server.port or 0)
        async with GameClient("127.0.0.1", server.port or 0) as bob:
            await bob.login("bob")
            rest = await lurker.read_eof(timeout=5)
            assert b"login_timeout" in rest
            await asyncio.sleep(0.3)
            assert await bob.echo("logged in, still here") == "logged in, still here"


# -- settings --------------------------------------------------------------------


def test_a_byte_burst_below_the_largest_frame_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationError, match="rate_limit_bytes_burst"):
        ServerSettings(max_frame_size=65536, rate_limit_bytes=1000, rate_limit_bytes_burst=1000)
    ServerSettings(max_frame_size=65536, rate_limit_bytes=0, rate_limit_bytes_burst=1000)


@pytest.mark.parametrize(
    "name", ["rate_limit_messages", "max_connections_per_ip", "accept_rate", "frame_timeout"]
)
def test_negative_limits_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        ServerSettings(**{name: -1})
