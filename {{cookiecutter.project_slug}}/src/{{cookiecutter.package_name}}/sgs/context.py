"""What a handler sees: its link, the server, the session, and ways to answer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .message import Message
from .outcomes import CloseReason, Reason

if TYPE_CHECKING:
    from .framework import Server
    from .group import Group
    from .link import Link


class Context:
    """One per link, reused for each of its messages (no allocation per message).

    ``msg_id`` is the id of the message being handled right now; everything
    else is stable for the life of the link.
    """

    __slots__ = ("link", "server", "msg_id", "session")

    def __init__(self, link: Link, server: Server) -> None:
        self.link = link
        self.server = server
        self.msg_id = 0
        #: Per-link data for handlers (login state, user objects, ...): the link's dict.
        self.session: dict[str, Any] = link.session

    def reply(self, msg: Message) -> None:
        """Send ``msg`` on this link now, in order with every other reply."""
        self.link.send(msg)

    def push(self, msg: Message, to: Link | Group | Iterable[Link]) -> None:
        """Send ``msg`` to another link, a group or several links; encoded once."""
        self.server.push(msg, to)

    def close(self, reason: Reason | str = CloseReason.KICKED) -> None:
        """Close this link once the current handler is done and its reply flushed.

        ``reason`` is a :class:`CloseReason` or one registered with ``close_reason``.
        """
        self.link.close_after_handler(reason)
