"""Outcomes: every refusal, ``Error``, time-out, throttle and close with a reason, counted once.

A connection can be told no in many places (the accept, the WebSocket
handshake, the frame parser, the inbound budget, a per-type limit, a handler,
the idle sweep), and each used to count, log, answer and close in its own
way, so counters drifted from what clients saw. Here each outcome is one
method that does the four steps together: count in :class:`Stats`, log (at
most a line a second, or once per link), answer ``Error(code)``, and close
with a :data:`Reason`. Every transport and layer calls it; ``Stats`` and the
Prometheus series read the same tables, so a counter moves exactly when the
client was answered or closed.

Close reasons are :class:`CloseReason` members, or a game's own reasons
registered once with :func:`close_reason` (``kicked``, ``banned``): a free
string is refused at the close, so metrics labels stay a closed set.
:func:`reason_label` is the one way to print either.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .builtins import Error
from .errors import HandlerError
from .logs import RateLimitedLog

if TYPE_CHECKING:
    from .errors import ProtocolError
    from .link import Link
    from .protocol import Codec
    from .settings import ServerSettings

log = logging.getLogger("sgs.outcomes")


class CloseReason(str, enum.Enum):
    """Why the framework closed a link; the value is the ``sgs_links_closed`` label."""

    REMOTE = "remote_close"
    LOCAL = "local_close"
    PROTOCOL_ERROR = "protocol_error"
    HANDLER_ERROR = "handler_error"
    IDLE_TIMEOUT = "idle_timeout"
    SEND_OVERFLOW = "send_overflow"
    SERVER_SHUTDOWN = "server_shutdown"
    SERVER_FULL = "server_full"
    RATE_LIMITED = "rate_limited"
    FRAME_TIMEOUT = "frame_timeout"
    REPLACED = "replaced"  # a newer login of the same key took over (bindings)
    KICKED = "kicked"  # ctx.close() without a reason

    def __str__(self) -> str:
        return self.value


class CustomReason(str):
    """A game's own close reason; made only by :func:`close_reason`."""

    __slots__ = ()


Reason = CloseReason | CustomReason

_LABEL = re.compile(r"[a-z][a-z0-9_]{0,39}")
_CUSTOM: dict[str, CustomReason] = {}


def close_reason(name: str) -> Reason:
    """Register ``name`` (lower case, digits, ``_``) as a close reason; returns it.

    Call it once where the game is set up (``BANNED = close_reason("banned")``);
    the name becomes a label of ``sgs_links_closed``, exported at 0 from then on.
    Registering a name twice returns the same reason.
    """
    if not _LABEL.fullmatch(name):
        raise ValueError(f"close reason {name!r}: use 1-40 of a-z, 0-9 and _, starting a-z")
    try:
        return CloseReason(name)
    except ValueError:
        pass
    return _CUSTOM.setdefault(name, CustomReason(name))


def as_reason(reason: Reason | str) -> Reason:
    """``reason`` as a registered reason; a name nobody registered is a programming error."""
    if isinstance(reason, CloseReason | CustomReason):
        return reason
    try:
        return CloseReason(reason)
    except ValueError:
        pass
    found = _CUSTOM.get(reason)
    if found is None:
        raise ValueError(
            f"close reason {reason!r} is not registered: call close_reason({reason!r}) once "
            "at import, then close with what it returns"
        )
    return found


def reason_label(reason: Reason | str | None) -> str:
    """The one stringifier: a reason as logs and the metrics label show it."""
    return "unknown" if reason is None else str(reason)


def close_labels() -> tuple[str, ...]:
    """Every reason a link can close with: the framework's and the registered ones."""
    return (*(r.value for r in CloseReason), *_CUSTOM)


#: Why a connection was refused before it became a link (``sgs_links_refused``):
#: (code of the Error it is answered with, or None: no answer at all; log text).
REFUSALS: dict[str, tuple[str | None, str]] = {
    "full": ("server_full", "too many connections"),
    "shutting_down": ("server_full", "server is shutting down"),
    "max_connections_per_ip": ("too_many_connections", "max_connections_per_ip"),
    "accept_rate": (None, "over accept_rate"),  # a flood: spend nothing on it, not even a reply
    "origin": (None, "Origin not in ws_allowed_origins"),  # HTTP 403 at the handshake
    # Behind a load balancer (proxy_protocol): aborted before any byte of the game.
    "proxy_untrusted": (None, "PROXY header from a peer not in trusted_proxies"),
    "proxy_header": (None, "malformed or missing PROXY header / X-Forwarded-For"),
}


@dataclass
class Stats:
    """What happened to this server's links, as plain ints (cheap on the hot path).

    The tables by reason or code are written by :class:`Outcomes` only; the
    totals below them are derived, so a total and its table never disagree.
    """

    accepted: int = 0
    frames_in: int = 0
    protocol_errors: int = 0
    handler_errors: int = 0
    dropped: int = 0
    send_overflows: int = 0  # links closed because their send side was full
    bytes_in: int = 0
    bytes_out: int = 0
    frames_out: int = 0
    throttled: int = 0  # times a link's reading paused for its byte or message budget
    # By reason or code; touched off the hot path only (closes, refusals, errors).
    refused_by: dict[str, int] = field(default_factory=dict)
    closed_by: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # Error replies sent, by code

    @property
    def refused(self) -> int:
        return sum(self.refused_by.values())

    @property
    def closed(self) -> int:
        return sum(self.closed_by.values())

    @property
    def idle_closed(self) -> int:
        return self.errors.get("idle_timeout", 0)

    @property
    def frame_timeouts(self) -> int:
        return self.errors.get("frame_timeout", 0)

    @property
    def rate_limited(self) -> int:
        """Messages answered Error(rate_limited), per link or per type."""
        return self.errors.get("rate_limited", 0)

    def as_dict(self) -> dict[str, int]:
        figures = {k: v for k, v in asdict(self).items() if isinstance(v, int)}
        for name in ("refused", "closed", "idle_closed", "frame_timeouts", "rate_limited"):
            figures[name] = getattr(self, name)
        return figures


def _count(table: dict[str, int], key: str) -> None:
    table[key] = table.get(key, 0) + 1


class Outcomes:
    """The one service that tells a link no, and counts it; one per server."""

    def __init__(self, settings: ServerSettings, codec: Codec, stats: Stats | None = None) -> None:
        self.settings = settings
        self.codec = codec
        self.stats = stats if stats is not None else Stats()
        self._refusal_log = RateLimitedLog(log, per_second=1)  # a flood logs a line a second
        self._stream_log = RateLimitedLog(log)

    # -- before a link exists ---------------------------------------------

    def refuse(self, link: Link, why: str, detail: str = "") -> None:
        """Close a connection that never became a link (``why`` is a key of :data:`REFUSALS`)."""
        code, text = REFUSALS[why]
        _count(self.stats.refused_by, why)
        reason = f"{text} {detail}".rstrip()
        transport = link.transport
        if code is not None:
            _count(self.stats.errors, code)
            transport.write(self.codec.encode_frame(Error(code=code, message=reason, msg_id=0)))
            transport.close()
        else:
            transport.abort()
        link.close()  # CONNECTING: marks it closed, nothing else
        self._refusal_log.warning("refused %s: %s", link.peer, reason)

    def refuse_transport(self, transport: Any, peer: Any, why: str, detail: str) -> None:
        """Abort a connection refused before it became a link (its PROXY header), counted."""
        _count(self.stats.refused_by, why)
        transport.abort()
        self._refusal_log.warning("refused %s: %s (%s)", peer, REFUSALS[why][1], detail)

    def refuse_handshake(self, why: str, detail: str) -> None:
        """A WebSocket handshake answered with an HTTP error (no link was made)."""
        _count(self.stats.refused_by, why)
        self._refusal_log.warning("ws handshake refused: %s (%s)", REFUSALS[why][1], detail)

    # -- Error answers --------------------------------------------------------

    def error(
        self,
        link: Link,
        code: str,
        message: str = "",
        msg_id: int = 0,
        close: Reason | str | None = None,
    ) -> None:
        """Answer ``Error(code)`` on ``link``, counted by code; then close if ``close`` is given.

        The way a game tells a client no outside a handler's return (a login
        clock, a replaced session): ``server.outcomes.error(link, "banned",
        close=BANNED)``. Inside a handler, raise ``HandlerError`` instead.
        """
        _count(self.stats.errors, code)
        link.send(Error(code=code, message=message or code, msg_id=msg_id))
        if close is not None:
            link.close(close)

    def error_frame(self, code: str, message: str = "") -> bytes:
        """``Error(code)`` encoded and counted, for a frame that must bypass ``link.send``.

        Session resumption writes it straight on a connection that no longer
        carries the player (its queue is already handed to the resumed one).
        """
        _count(self.stats.errors, code)
        return self.codec.encode_frame(Error(code=code, message=message or code, msg_id=0))

    def refused(self, link: Link, exc: HandlerError, msg_id: int) -> None:
        """A handler (or a check) raised HandlerError: answer Error(code) in its place."""
        self.error(link, exc.code, exc.message, msg_id)

    def protocol_error(self, link: Link, exc: ProtocolError) -> None:
        """An unknown id or an undecodable value: Error(code), closed per protocol_error_policy."""
        self.stats.protocol_errors += 1
        msg_id = getattr(exc, "msg_id", 0)
        # Once per link at WARNING: a client sending junk must not flood the log.
        link.protocol_errors += 1
        first = link.protocol_errors == 1
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "link %d: %s%s",
            link.id,
            exc,
            " (further protocol errors of this link are logged at DEBUG)" if first else "",
            extra={"link_id": link.id, "msg_id": msg_id, "peer": link.peer},
        )
        policy = self.settings.protocol_error_policy
        self.error(
            link,
            exc.code,
            str(exc),
            msg_id,
            CloseReason.PROTOCOL_ERROR if policy == "close" else None,
        )

    def broken_stream(self, link: Link, exc: ProtocolError, error: bool = True) -> None:
        """The byte stream cannot go on (an oversized frame header, a WebSocket message
        that breaks the rules): counted, Error(code) unless ``error`` is False, closed."""
        self.stats.protocol_errors += 1
        msg_id = getattr(exc, "msg_id", 0)
        self._stream_log.warning("link %d (%s): %s; closing", link.id, link.peer, exc)
        link.stop_reading()
        if error:
            self.error(link, exc.code, str(exc), msg_id)
        link.close(CloseReason.PROTOCOL_ERROR)

    def handler_crashed(self, link: Link, msg_id: int) -> None:
        """A handler raised (not HandlerError): logged with its traceback, Error(internal)."""
        self.stats.handler_errors += 1
        log.exception(
            "link %d: handler for message id %d raised",
            link.id,
            msg_id,
            extra={"link_id": link.id, "msg_id": msg_id, "peer": link.peer},
        )
        policy = self.settings.handler_error_policy
        self.error(
            link,
            "internal",
            "internal server error",
            msg_id,
            CloseReason.HANDLER_ERROR if policy == "close" else None,
        )

    def commit_failed(self, link: Link, exc: Exception) -> None:
        """store_sync = "always" and the commit failed: the held replies never go out."""
        log.error(
            "the store could not commit (%s); closing link %d without its replies", exc, link.id
        )
        link.out.clear()
        link.out_bytes = 0
        link.close(CloseReason.HANDLER_ERROR)

    # -- limits ---------------------------------------------------------------

    def rate_limited(self, link: Link, rejected: list[int]) -> None:
        """Answer the frames a link's message budget refused, in their place in the stream."""
        message = f"over rate_limit_messages ({self.settings.rate_limit_messages:g}/s)"
        close = self.settings.rate_limit_policy == "close"
        for msg_id in rejected:
            if not link.is_open:
                break
            self.error(
                link, "rate_limited", message, msg_id, CloseReason.RATE_LIMITED if close else None
            )

    def over_type_limit(self, link: Link, name: str, text: str) -> HandlerError:
        """A per-type limit (``router.limit``) refused a message: the HandlerError to raise.

        Raised from the check, the dispatcher answers it (counted there, once);
        with ``rate_limit_policy = "close"`` the link closes after that answer.
        """
        self._limit_logged(link, name)
        if self.settings.rate_limit_policy == "close":
            link.close_after_handler(CloseReason.RATE_LIMITED)
        return HandlerError("rate_limited", text)

    def throttle(self, link: Link, pause: float, what: str) -> None:
        """Over the inbound budget (``what``: bytes or messages): stop reading for ``pause`` s.

        Counted once per pause, when reading stops; a link already paused only
        has its pause left as it is.
        """
        self._limit_logged(link, what)
        if link.throttled:
            return
        self.stats.throttled += 1
        link.pause_for(pause)

    def _limit_logged(self, link: Link, what: str) -> None:
        if not link.limit_logged:
            link.limit_logged = True
            log.warning(
                "link %d from %s: over its %s rate limit (%s policy); logged once per link",
                link.id,
                link.peer,
                what,
                self.settings.rate_limit_policy,
                extra={"link_id": link.id},
            )

    # -- time-outs and the send side --------------------------------------

    def time_out(self, link: Link, reason: CloseReason, message: str, waited: float) -> None:
        """Tell a link which timeout closed it (Error with code idle_timeout, frame_timeout)."""
        code = reason.value
        log.info(
            "link %d: %s after %.1fs, closing",
            link.id,
            code,
            waited,
            extra={"link_id": link.id, "peer": link.peer},
        )
        self.error(link, code, message, 0, reason)

    def send_full(self, link: Link) -> bool:
        """The send side is over send_buffer_size: drop the message or close. Always False."""
        if self.settings.send_overflow == "drop":
            link.dropped += 1
            self.stats.dropped += 1
            return False
        self.stats.send_overflows += 1
        log.warning(
            "link %d: send side over %d bytes, closing",
            link.id,
            link.send_limit,
            extra={"link_id": link.id},
        )
        link.close(CloseReason.SEND_OVERFLOW)
        if link.worker is not None:
            link.worker.post_send_interrupt(link)
        return False

    # -- the end --------------------------------------------------------------

    def closed(self, link: Link) -> None:
        """A link's state was dropped (once per link): counted by its close reason."""
        _count(self.stats.closed_by, reason_label(link.close_reason))
        log.debug(
            "link %d closed: %s",
            link.id,
            reason_label(link.close_reason),
            extra={"link_id": link.id},
        )
