"""Behind a load balancer: hand-built PROXY v1/v2 headers and X-Forwarded-For over real sockets.

The server listens on 127.0.0.1 and every test connects from there, so
``trusted_proxies = ["127.0.0.0/8"]`` makes the test the load balancer and
``["10.0.0.0/8"]`` makes it an untrusted stranger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import fwkit
from fwkit import EchoReq, RawConn, frame
from test_metrics import metered, scrape, value
from test_proxy_header import inet4, inet6, v2
from testkit import free_port, until
from wskit import ws_peer

from {{ cookiecutter.package_name }}.sgs import Server
from {{ cookiecutter.package_name }}.sgs.builtins import ERROR_ID
from {{ cookiecutter.package_name }}.sgs.testing import running_server

BEHIND = {"proxy_protocol": True, "trusted_proxies": ["127.0.0.0/8"]}
NO_LIMITS: dict[str, Any] = {
    "rate_limit_messages": 0,
    "rate_limit_bytes": 0,
    "max_connections_per_ip": 0,
    "accept_rate": 0,
    "frame_timeout": 0,
}


def v1(src: str, sport: int = 40000) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    dst = "::1" if ":" in src else "127.0.0.1"
    return f"PROXY {family} {src} {dst} {sport} 6666\r\n".encode()


def echo(seq: int) -> bytes:
    return frame(EchoReq.__msg_id__, json.dumps({"seq": seq, "text": "hi"}).encode())


@contextlib.asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[Server]:
    async with running_server(
        fwkit.router, fwkit.catalog, protocol="json", **{**NO_LIMITS, **settings}
    ) as server:
        yield server


async def answered(conn: RawConn, seq: int, send: bool = True) -> bool:
    """``seq`` is echoed (sent now unless ``send`` is False: it went with the header)."""
    if send:
        conn.send(echo(seq))
    msg_id, value_ = await conn.read_frame()
    return msg_id == EchoReq.__reply__.__msg_id__ and json.loads(value_)["seq"] == seq


def peers(server: Server) -> set[Any]:
    return {link.peer for link in server.links.values()}


# -- the game port -------------------------------------------------------------------


async def test_v1_and_v2_headers_give_links_the_clients_addresses() -> None:
    async with serving(**BEHIND) as server:
        a = await RawConn.open(server.port or 0)
        a.send(v1("203.0.113.7", 51000) + echo(1))  # header and first frame in one write
        assert await answered(a, 1, send=False)
        b = await RawConn.open(server.port or 0)
        wire = v2(family=0x21, body=inet6("2001:db8::9", "::1", 4242, 6666)) + echo(3)
        for k in range(len(wire)):  # the header and the frame trickle in a byte at a time
            b.send(wire[k : k + 1])
            await b.writer.drain()
        msg_id, _ = await b.read_frame()
        assert msg_id != ERROR_ID
        c = await RawConn.open(server.port or 0)
        c.send(v2(command=0x20, family=0x00))  # LOCAL: the balancer's own health check
        assert await answered(c, 4)
        await until(lambda: len(server.links) == 3, 5.0, "three links")
        found = peers(server)
        assert ("203.0.113.7", 51000) in found
        assert ("2001:db8::9", 4242) in found
        assert any(p[0] == "127.0.0.1" for p in found)  # LOCAL keeps the proxy's address
        for conn in (a, b, c):
            await conn.close()


async def test_max_connections_per_ip_counts_the_real_clients_not_the_proxy() -> None:
    async with serving(max_connections_per_ip=1, **BEHIND) as server:
        first = await RawConn.open(server.port or 0)
        first.send(v1("198.51.100.1"))
        second = await RawConn.open(server.port or 0)
        second.send(v2(body=inet4("198.51.100.2", "10.0.0.1", 1000, 6666)))
        assert await answered(first, 1)
        assert await answered(second, 2)  # a second player behind the same balancer
        again = await RawConn.open(server.port or 0)
        again.send(v1("198.51.100.1", 50001))  # the first player's address, once more
        assert b"too_many_connections" in await again.read_eof()
        assert server.stats.refused_by == {"max_connections_per_ip": 1}
        for conn in (first, second, again):
            await conn.close()


async def test_bad_headers_close_the_connection_and_are_counted() -> None:
    cases = [
        echo(1),  # a client that skipped the balancer: no header at all
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n" + echo(1),
        v2(command=0x11, body=bytes(12)),
        v2(length=0xFFFF),
        b"PROXY " + b"9" * 200,
    ]
    async with serving(**BEHIND) as server:
        for wire in cases:
            conn = await RawConn.open(server.port or 0)
            conn.send(wire)
            assert await conn.read_eof() == b"", wire  # closed, nothing answered
            await conn.close()
        assert server.stats.refused_by == {"proxy_header": len(cases)}
        assert server.stats.accepted == 0
        good = await RawConn.open(server.port or 0)
        good.send(v1("192.0.2.5"))
        assert await answered(good, 9)  # the port still serves
        await good.close()


async def test_a_header_from_an_untrusted_peer_is_refused() -> None:
    async with serving(proxy_protocol=True, trusted_proxies=["10.0.0.0/8"]) as server:
        conn = await RawConn.open(server.port or 0)
        conn.send(v1("203.0.113.7") + echo(1))
        assert await conn.read_eof() == b""
        assert server.stats.refused_by == {"proxy_untrusted": 1}
        assert server.stats.accepted == 0
        await conn.close()


async def test_refusals_are_exported_in_sgs_links_refused() -> None:
    async with metered(
        fwkit.router, fwkit.catalog, protocol="json", **{**NO_LIMITS, **BEHIND}
    ) as server:
        for wire in (b"junk\r\n", v2(command=0x2F)):
            conn = await RawConn.open(server.port or 0)
            conn.send(wire)
            await conn.read_eof()
            await conn.close()
        samples = await scrape(server)
        assert value(samples, "sgs_links_refused_total", reason="proxy_header") == 2
        assert value(samples, "sgs_links_refused_total", reason="proxy_untrusted") == 0


async def test_without_proxy_protocol_a_header_is_just_bad_input() -> None:
    async with serving(trusted_proxies=["127.0.0.0/8"]) as server:
        conn = await RawConn.open(server.port or 0)
        conn.send(v1("203.0.113.7"))
        await conn.read_eof()  # not TLV: the protocol-error path closes it
        assert "proxy_header" not in server.stats.refused_by
        await conn.close()


# -- the WebSocket port ----------------------------------------------------------------


def header_socket(header: bytes) -> Any:
    """A picows socket_factory that connects and writes ``header`` before the handshake."""

    async def factory(url: Any) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, (url.host, url.port))
        await loop.sock_sendall(sock, header)
        return sock

    return factory


async def echoes_over_ws(peer: Any, seq: int) -> bool:
    peer.send(echo(seq))
    [(msg_id, value_)] = await peer.frames(1)
    return msg_id == EchoReq.__reply__.__msg_id__ and json.loads(value_)["seq"] == seq


async def test_websocket_behind_proxy_protocol_v1_and_v2() -> None:
    async with serving(ws_port=free_port(), **BEHIND) as server:
        port = server.ws_port or 0
        a = await ws_peer(port, socket_factory=header_socket(v1("203.0.113.8", 777)))
        assert await echoes_over_ws(a, 1)
        header = v2(body=inet4("198.51.100.8", "10.0.0.1", 888, 6667))
        b = await ws_peer(port, socket_factory=header_socket(header))
        assert await echoes_over_ws(b, 2)
        assert {("203.0.113.8", 777), ("198.51.100.8", 888)} <= peers(server)
        assert {link.transport_name for link in server.links.values()} == {"ws"}
        for peer in (a, b):
            assert peer.transport is not None
            peer.transport.disconnect()


async def test_websocket_without_a_header_is_refused() -> None:
    async with serving(ws_port=free_port(), **BEHIND) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ws_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert server.stats.refused_by == {"proxy_header": 1}
        writer.close()


async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client() -> None:
    async with serving(ws_port=free_port(), trusted_proxies=["127.0.0.0/8"]) as server:
        port = server.ws_port or 0
        # A client's own claim (leftmost) is never read past an untrusted hop.
        forwarded = {"X-Forwarded-For": "6.6.6.6, 203.0.113.20, 127.0.0.5"}
        a = await ws_peer(port, extra_headers=forwarded)
        assert await echoes_over_ws(a, 1)
        assert ("203.0.113.20", 0) in peers(server)
        bad = await ws_peer(port, extra_headers={"X-Forwarded-For": "not-an-address"})
        await bad.closed()
        assert server.stats.refused_by == {"proxy_header": 1}
        assert a.transport is not None
        a.transport.disconnect()


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    async with serving(ws_port=free_port(), trusted_proxies=["10.0.0.0/8"]) as server:
        peer = await ws_peer(server.ws_port or 0, extra_headers={"X-Forwarded-For": "1.2.3.4"})
        assert await echoes_over_ws(peer, 1)
        assert [p[0] for p in peers(server)] == ["127.0.0.1"]
        assert peer.transport is not None
        peer.transport.disconnect()


# -- settings ------------------------------------------------------------------------


def test_settings_refuse_proxy_protocol_without_trusted_proxies_or_with_a_bad_cidr() -> None:
    from pydantic import ValidationError

    from {{ cookiecutter.package_name }}.sgs import ServerSettings

    for bad, why in (
        ({"proxy_protocol": True}, "no trusted_proxies"),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "is not a network"),
        ({"trusted_proxies": ["a-host-name"]}, "is not a network"),
    ):
        try:
            ServerSettings(**bad)
        except ValidationError as exc:
            assert why in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
    assert ServerSettings(proxy_protocol=True, trusted_proxies=["10.0.0.0/8", "fd00::/8"])
