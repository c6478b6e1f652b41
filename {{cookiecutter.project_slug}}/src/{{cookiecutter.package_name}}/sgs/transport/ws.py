"""WebSocket transport: browser players on the same router, groups and limits as TCP.

picows (Cython, built for asyncio/uvloop) parses the WebSocket framing and
hands every frame to :meth:`WsPeer.on_ws_frame` with no task or future per
message. Each connection gets an ordinary :class:`~..link.Link`; its
"transport" is :class:`WsTransport`, which turns each write of the link (all
frames of one writer pass, joined) into one binary message. So the dispatcher,
the codecs, groups, timers, flow control, idle timeout and graceful stop are
the TCP code paths, and a TCP player and a browser player meet in one room.

Inside binary messages the wire is the TLV stream, unchanged: a message holds
one or more complete frames. What a peer can get wrong, and the answer:

| input | answer |
|---|---|
| text message | close 1003 |
| message ending inside a TLV frame | ``Error(partial_frame)``, close 1007 |
| message above ``max_frame_size`` + header | close 1009, refused from the frame header |
| TLV header above ``max_frame_size`` | ``Error(frame_too_large)``, close (as on TCP) |
| Origin not in ``ws_allowed_origins`` | HTTP 403 at the handshake |
| ``X-Forwarded-For`` from a trusted proxy naming no address | closed, counted as ``proxy_header`` |

Behind a load balancer (``trusted_proxies``) the link's address is the
client's: from the PROXY header (``proxy_protocol``, read by
:class:`~..proxy.ProxiedConnection` before picows sees a byte) and then from
``X-Forwarded-For`` when the peer that sent it is a trusted proxy.

Every case goes through the server's outcome service (:mod:`..outcomes`):
logged (at most a few lines a second) and counted in ``protocol_errors``,
``errors`` and ``closed_by`` (refused handshakes in ``refused_by["origin"]``),
as on TCP; other links are unaffected. A plain HTTP GET (no ``Upgrade`` header) is answered from
``ws_static_dir``, so the demo page and the client are served by the port they
talk to (:mod:`.static`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]

from ..connector import HEADER_SIZE
from ..errors import ProtocolError
from ..link import CloseReason, Link, LinkState
from ..proxy import ForwardedError, ProxiedConnection
from .static import StaticFiles

if TYPE_CHECKING:
    from ..framework import Server

log = logging.getLogger("sgs.ws")

_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE
_OPEN = LinkState.OPEN

#: Close codes chosen from the link's close reason (RFC 6455, section 7.4.1).
_CODES: dict[Any, WSCloseCode] = {
    CloseReason.SERVER_SHUTDOWN: WSCloseCode.GOING_AWAY,
    CloseReason.PROTOCOL_ERROR: WSCloseCode.POLICY_VIOLATION,
    CloseReason.HANDLER_ERROR: WSCloseCode.INTERNAL_ERROR,
    CloseReason.SERVER_FULL: WSCloseCode.TRY_AGAIN_LATER,
}


class WsTransport:
    """What a Link sees as its transport: one binary WebSocket message per write."""

    __slots__ = ("ws", "raw", "link", "code", "peer")

    def __init__(self, ws: WSTransport, link: Link, peer: Any) -> None:
        self.ws = ws
        self.raw: asyncio.Transport = ws.underlying_transport
        self.link = link
        self.code: WSCloseCode | None = None  # set before close() by a specific refusal
        self.peer = peer  # the client's address (behind a trusted proxy: the one it named)

    def write(self, data: bytes) -> None:
        if not self.ws.is_close_frame_sent:
            self.ws.send(_BINARY, data)

    def close(self) -> None:
        """Send the close frame (code from the link's close reason), then end the TCP stream."""
        ws = self.ws
        if not ws.is_close_frame_sent:
            code = self.code or _CODES.get(self.link.close_reason, WSCloseCode.OK)
            ws.send_close(code)
        # The server closes TCP first (RFC 6455 7.1.1); pending bytes go out first,
        # and a peer that does not take them is cut after the drain timeout.
        grace = max(self.link.server.settings.drain_timeout, 0.1)
        asyncio.get_running_loop().call_later(grace, ws.disconnect, False)
        ws.disconnect(True)

    def abort(self) -> None:
        self.ws.disconnect(False)

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        return self.raw.get_extra_info(name, default)


class WsLink(Link):
    """A link that came in over WebSocket: labelled ``ws`` in metrics and logs."""

    __slots__ = ()
    transport_name = "ws"


class WsPeer(WSListener):  # type: ignore[misc]
    """One WebSocket connection: frames in to its Link, the Link's writes out as messages.

    Frames are parsed here, in the event loop's callback, in every resource
    model: picows has already cut the stream into messages, and checking that
    a message ends on a TLV boundary needs the parse to happen in order with
    the message's end.
    """

    def __init__(self, ws_server: WsServer, peer: Any = None, forwarded: str | None = None) -> None:
        self.ws_server = ws_server
        self.link: Link = WsLink(ws_server.server)
        self.transport: WsTransport | None = None
        self.message_bytes = 0
        self.peer = peer  # named by a PROXY header; None: the socket's peer
        self.forwarded = forwarded  # X-Forwarded-For, read when trusted_proxies is set

    def on_ws_connected(self, ws: WSTransport) -> None:
        server = self.ws_server.server
        peer = self.peer or ws.underlying_transport.get_extra_info("peername")
        self.transport = transport = WsTransport(ws, self.link, peer)
        trusted = server.trusted_proxies
        if trusted is not None and self.forwarded:
            try:
                transport.peer = trusted.forwarded_client(peer, self.forwarded)
            except ForwardedError as exc:
                server.refuse_connection(transport, peer, "proxy_header", str(exc))
                return
        self.link.connection_made(transport)

    def on_ws_frame(self, ws: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        link = self.link
        if kind is _BINARY or kind is _CONTINUATION:
            if link.state is not _OPEN or link.reading_stopped:
                return
            size = self.message_bytes + frame.payload_size
            if size > self.ws_server.message_limit:
                self._refuse(
                    WSCloseCode.MESSAGE_TOO_BIG,
                    "message of more than %d bytes",
                    self.ws_server.message_limit,
                )
                return
            payload = frame.get_payload_as_bytes()
            link.server.stats.bytes_in += len(payload)
            link.ingest(payload)
            if frame.fin:
                self.message_bytes = 0
                reader = link.reader
                if reader.pending and reader.broken is None and link.state is _OPEN:
                    self._partial_frame()
            else:
                self.message_bytes = size
        elif kind is _TEXT:
            self._refuse(
                WSCloseCode.UNSUPPORTED_DATA, "text message (%d bytes)", frame.payload_size
            )
        elif kind is _CLOSE:
            if not ws.is_close_frame_sent:
                ws.send_close(WSCloseCode.OK)
            ws.disconnect(True)

    def _refuse(self, code: WSCloseCode, what: str, *args: Any) -> None:
        """Close with WebSocket close ``code``; no Error (the client broke the framing)."""
        self._broken(code, WsProtocolError(what % args, "ws_protocol"), error=False)

    def _partial_frame(self) -> None:
        self._broken(
            WSCloseCode.INVALID_TEXT,  # 1007: inconsistent message data
            WsProtocolError("a WebSocket message must carry whole TLV frames", "partial_frame"),
        )

    def _broken(self, code: WSCloseCode, exc: ProtocolError, error: bool = True) -> None:
        assert self.transport is not None
        self.transport.code = code
        self.link.server.outcomes.broken_stream(self.link, exc, error)

    def on_ws_disconnected(self, ws: WSTransport) -> None:
        sent = ws.close_handshake.sent if ws.close_handshake is not None else None
        if (
            sent is not None
            and sent.code is WSCloseCode.MESSAGE_TOO_BIG
            and self.link.state is _OPEN
        ):
            # picows refused a frame from its header alone (above max_frame_size + header).
            self._refuse(
                WSCloseCode.MESSAGE_TOO_BIG, "frame above %d bytes", self.ws_server.message_limit
            )
        self.link.connection_lost(None)

    def pause_writing(self) -> None:
        self.link.pause_writing()

    def resume_writing(self) -> None:
        self.link.resume_writing()


class WsServer:
    """The WebSocket listener of one Server (``ws_port``)."""

    def __init__(self, server: Server) -> None:
        s = server.settings
        self.server = server
        self.path = s.ws_path
        self.allowed = frozenset(s.ws_allowed_origins)
        self.message_limit = s.max_frame_size + HEADER_SIZE
        self.static = StaticFiles(s.ws_static_dir, server) if s.ws_static_dir else None
        self.refused = 0
        self.port: int | None = None
        self.scheme = "http"
        self._listener: asyncio.AbstractServer | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        s = self.server.settings
        ping = s.ws_ping_interval
        self.scheme = "https" if tls is not None else "http"
        listen: dict[str, Any] = {
            "backlog": s.backlog,
            "reuse_address": True,
            "reuse_port": s.reuse_port or None,
            "ssl": tls,
            "ssl_handshake_timeout": s.tls_handshake_timeout if tls is not None else None,
        }
        gate = self.server.proxies
        if gate is not None:  # proxy_protocol: the header first, then picows
            self._listener = await asyncio.get_running_loop().create_server(
                lambda: ProxiedConnection(gate, self._protocol_for), s.host, s.ws_port, **listen
            )
        else:
            self._listener = await ws_create_server(
                self._route,
                s.host,
                s.ws_port,
                websocket_handshake_timeout=s.ws_handshake_timeout,
                enable_auto_ping=ping > 0,
                auto_ping_idle_timeout=ping or 20.0,
                auto_ping_reply_timeout=ping or 20.0,
                max_frame_size=self.message_limit,
                logger_name=_picows_logger(),
                **listen,
            )
        self.port = self._listener.sockets[0].getsockname()[1]
        if self.static is not None and not self.static.root.is_dir():
            log.warning(
                "ws_static_dir %s is not a directory (relative to %s): plain GETs get 404",
                s.ws_static_dir,
                Path.cwd(),
            )
        log.info(
            "WebSocket on %s:%d%s%s",
            s.host,
            self.port,
            self.path,
            f" (demo page: {self.scheme}://{_browsable(s.host)}:{self.port}/)"
            if self.static
            else "",
        )

    def _protocol_for(self, peer: Any) -> WSProtocol:
        """picows's server protocol for one connection whose PROXY header named ``peer``.

        The arguments are the ones ``picows.ws_create_server`` passes (picows is
        pinned in requirements/); the listener factory carries ``peer`` to the
        handshake, which has no other way to learn it.
        """
        s = self.server.settings
        ping = s.ws_ping_interval
        return WSProtocol(
            None,  # host:port (client side only)
            None,  # path (client side only)
            False,  # is_client_side
            lambda request: self._route(request, peer),
            _picows_logger(),
            True,  # disconnect_on_exception
            s.ws_handshake_timeout,
            ping > 0,
            ping or 20.0,
            ping or 20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # enable_auto_pong
            self.message_limit,
            None,  # extra headers
            16 * 1024,  # read buffer's first size
        )

    def close(self) -> None:
        """Stop accepting; open links are closed by the server's graceful stop."""
        if self._listener is not None:
            self._listener.close()

    def _route(self, request: WSUpgradeRequest, peer: Any = None) -> Any:
        """The handshake: a WebSocket upgrade on ``ws_path``, or a plain GET for a file."""
        headers = request.headers
        path = request.path.decode("latin-1").split("?", 1)[0]
        if "websocket" not in headers.get("Upgrade", "").lower():
            if self.static is not None:
                return self.static.respond(path)
            return _refusal(404, b"not found\n")
        if path != self.path:
            return _refusal(404, b"no WebSocket endpoint here\n")
        origin = headers.get("Origin")
        if self.allowed and origin is not None and origin not in self.allowed:
            self.refused += 1
            self.server.outcomes.refuse_handshake("origin", f"origin {origin!r}")
            return _refusal(403, b"origin not allowed\n")
        forwarded = (
            headers.get("X-Forwarded-For") if self.server.trusted_proxies is not None else None
        )
        return WsPeer(self, peer, forwarded)


class WsProtocolError(ProtocolError):
    """A WebSocket message that breaks the transport's rules (text, too big, partial frame)."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.code = code
        self.msg_id = 0


def _browsable(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "::", "") else host


def _picows_logger() -> logging.Logger:
    """picows logs every connection at INFO: keep that for DEBUG runs only."""
    logger = logging.getLogger("sgs.ws.picows")
    if not log.isEnabledFor(logging.DEBUG) and logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger


def _refusal(status: int, body: bytes) -> WSUpgradeResponseWithListener:
    return WSUpgradeResponseWithListener(
        WSUpgradeResponse.create_error_response(
            status, body, {"Content-Type": "text/plain; charset=utf-8"}
        ),
        None,
    )


async def start_ws(server: Server, tls: ssl.SSLContext | None = None) -> WsServer:
    """Listen for WebSocket players on ``ws_port`` (called by ``Server.start``).

    With ``tls`` (the game port's context, from tls_cert_file/tls_key_file)
    the port speaks ``wss://`` and serves the demo page over https.
    """
    ws = WsServer(server)
    await ws.start(tls)
    return ws
