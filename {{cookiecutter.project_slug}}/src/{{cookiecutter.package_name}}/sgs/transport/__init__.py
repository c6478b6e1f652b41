"""Transports: what carries TLV frames to a :class:`~..link.Link`.

TCP is the framework's own listener (``framework.Server.start``); WebSocket
(``ws``) wraps each connection in a small adapter so the very same Link class,
dispatcher, codecs, groups, limits and graceful stop serve it. Handlers never
know which transport a link came in on (``link.transport_name`` says, for logs).
"""

from __future__ import annotations

from .ws import WsServer, start_ws

__all__ = ["WsServer", "start_ws"]
