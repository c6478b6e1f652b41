"""The connection's first bytes when ``proxy_protocol`` is on: the header, then the link.

:class:`ProxyGate` holds a :class:`~.header.ProxyHeaderReader` (and a
deadline) per connection only while its header is in flight; a connection
from outside ``trusted_proxies``, a malformed header or none within
:data:`HEADER_TIMEOUT` is refused through ``refuse`` (the server's counted
refusal: ``sgs_links_refused{reason="proxy_untrusted"|"proxy_header"}``).
Once the header is whole the connection carries on as if the client had
connected directly: :class:`ProxiedLink` on the game port,
:class:`ProxiedConnection` in front of picows on the WebSocket port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..link import Link, LinkState
from .header import ProxyHeaderError, ProxyHeaderReader
from .trust import TrustedProxies

#: Seconds a trusted proxy has to send the header; it writes it with its first packet.
HEADER_TIMEOUT = 5.0

#: ``refuse(transport, peer, reason, detail)``: abort the connection, count ``reason``.
Refuse = Callable[[Any, Any, str, str], None]

_CONNECTING = LinkState.CONNECTING


class ProxyGate:
    """Per-connection header state, kept only until the header has arrived."""

    __slots__ = ("trust", "refuse", "pending")

    def __init__(self, trust: TrustedProxies, refuse: Refuse) -> None:
        self.trust = trust
        self.refuse = refuse
        self.pending: dict[Any, tuple[ProxyHeaderReader, asyncio.TimerHandle]] = {}

    def open(self, key: Any, transport: Any, peer: Any) -> None:
        """A new connection: refused unless it comes from a trusted proxy."""
        if not self.trust.trusts(peer):
            self.refuse(transport, peer, "proxy_untrusted", "not in trusted_proxies")
            return
        timer = asyncio.get_running_loop().call_later(
            HEADER_TIMEOUT, self._late, key, transport, peer
        )
        self.pending[key] = (ProxyHeaderReader(), timer)

    def feed(self, key: Any, transport: Any, peer: Any, data: bytes) -> tuple[Any, bytes] | None:
        """The client's peername and the bytes after the header, once it is whole."""
        entry = self.pending.get(key)
        if entry is None:
            return None  # already refused
        reader, timer = entry
        try:
            found = reader.feed(data)
        except ProxyHeaderError as exc:
            self.drop(key)
            self.refuse(transport, peer, "proxy_header", str(exc))
            return None
        if found is None:
            return None
        self.drop(key)
        header, rest = found
        return (header.source or peer), rest

    def drop(self, key: Any) -> None:
        """The header arrived, or the connection ended first."""
        entry = self.pending.pop(key, None)
        if entry is not None:
            entry[1].cancel()

    def _late(self, key: Any, transport: Any, peer: Any) -> None:
        if self.pending.pop(key, None) is not None:
            self.refuse(
                transport, peer, "proxy_header", f"no PROXY header within {HEADER_TIMEOUT:g}s"
            )


class ProxiedLink(Link):
    """A game-port link that reads a PROXY header before it is accepted."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.server.proxies.open(self, transport, self.peer)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.state is not _CONNECTING:
            Link.data_received(self, data)
            return
        server = self.server
        done = server.proxies.feed(self, self.transport, self.peer, data)  # type: ignore[union-attr]
        if done is None:
            return
        self.peer, rest = done
        server.accept(self)
        if rest and self.state is LinkState.OPEN:
            Link.data_received(self, rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is _CONNECTING:
            self.server.proxies.drop(self)  # type: ignore[union-attr]
        Link.connection_lost(self, exc)


class ProxiedConnection(asyncio.Protocol):
    """The WebSocket port's first protocol: reads the header, then hands over to picows.

    ``make(peer)`` builds the WebSocket protocol for the client ``peer``; it
    takes the transport as if the connection had just been made and gets the
    bytes that followed the header (the HTTP upgrade request).
    """

    def __init__(self, gate: ProxyGate, make: Callable[[Any], asyncio.BaseProtocol]) -> None:
        self.gate = gate
        self.make = make
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.gate.open(self, transport, self.peer)

    def data_received(self, data: bytes) -> None:
        done = self.gate.feed(self, self.transport, self.peer, data)
        if done is None:
            return
        peer, rest = done
        transport = self.transport
        assert transport is not None
        inner = self.make(peer)
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if rest:
            _hand_on(inner, rest)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.drop(self)


def _hand_on(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Give ``data`` to ``protocol`` as if it had been read (buffered or not)."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buf = protocol.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
    else:
        protocol.data_received(data)  # type: ignore[attr-defined]
