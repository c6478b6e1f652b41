"""Message type -> handler, with middleware in a declared order."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .builtins import PingReq, PongResp
from .context import Context
from .limits import TokenBucket
from .message import Message
from .middleware import Check, Handler, Layer, Middleware, Route, compose, layer

log = logging.getLogger("sgs.router")

H = TypeVar("H", bound=Handler)
#: A rate or burst: a number, or the name of a settings field holding one.
Rate = float | str


def _pong(ctx: Context, msg: PingReq) -> PongResp:
    return PongResp(client_time_ms=msg.client_time_ms, server_time_ms=int(time.time() * 1000))


class Router:
    """Collects handlers; one handler per inbound type.

    ``include`` lets a game split handlers over modules, each with its own
    middleware, and still hand one router to the server.
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Message], Handler] = {}
        self._layers: list[Layer] = []
        self._children: list[Router] = []
        self._limits: dict[type[Message], tuple[Rate, Rate | None]] = {}
        self._settings: Any = None  # while compiling: resolves limits named by a setting

    def on(self, msg_type: type[Message]) -> Callable[[H], H]:
        if msg_type.__msg_id__ is None:
            raise TypeError(f"{msg_type.__qualname__} has no msg_id; it cannot be routed")

        def register(handler: H) -> H:
            if msg_type in self._handlers:
                raise ValueError(f"{msg_type.__qualname__} already has a handler")
            self._handlers[msg_type] = handler
            return handler

        return register

    def limit(self, msg_type: type[Message], per_second: Rate, burst: Rate | None = None) -> None:
        """Allow each link ``per_second`` messages of ``msg_type`` (``burst`` at once).

        One more is answered ``Error(rate_limited)`` naming its message id (or,
        with ``rate_limit_policy = "close"``, closes the link), and its handler
        does not run. Checked before any middleware; types without a limit pay
        nothing. Either value may be the name of a settings field, read when
        the server starts, so a deployment tunes it like any setting (0
        switches the limit off).
        """
        for value in (per_second, burst):
            if isinstance(value, int | float) and value <= 0:
                raise ValueError(f"{msg_type.__qualname__}: limits must be positive")
        self._limits[msg_type] = (per_second, burst)

    def use(self, middleware: Middleware | Check) -> Middleware | Check:
        """Add middleware or a check; the first added is the outermost.

        ``async def mw(ctx, msg, call_next)`` is middleware; ``def check(ctx,
        msg)`` is a check, which refuses a message by raising HandlerError and
        costs one plain call (see :mod:`.middleware`). Usable as a decorator.
        """
        self._layers.append(layer(middleware))
        return middleware

    def include(self, other: Router) -> None:
        """Serve ``other``'s handlers too, wrapped in this router's middleware outside theirs."""
        self._children.append(other)

    def compile(self, settings: Any = None) -> dict[int, tuple[type[Message], Route]]:
        """msg_id -> (type, composed route), built once when the server starts.

        ``settings`` resolves limits given as settings field names.
        """
        table: dict[int, tuple[type[Message], Route]] = {}
        self._settings = settings
        self._compile_into(table, [], {})
        if PingReq.__msg_id__ not in table:
            table[PingReq.__msg_id__] = (PingReq, compose(_pong, []))  # type: ignore[index]
        return table

    def _compile_into(
        self,
        table: dict[int, tuple[type[Message], Route]],
        outer: list[Layer],
        outer_limits: dict[type[Message], tuple[Rate, Rate | None]],
    ) -> None:
        layers = outer + self._layers
        limits = {**outer_limits, **self._limits}
        for msg_type, handler in self._handlers.items():
            msg_id: Any = msg_type.__msg_id__
            if msg_id in table:
                raise ValueError(f"{msg_type.__qualname__} has handlers in two routers")
            limit = limits.get(msg_type)
            checks: list[Layer] = []
            if limit is not None:
                rate, burst = (_resolve(value, msg_type, self) for value in limit)
                if rate:  # outermost: an over-limit message meets no middleware
                    checks.append(Layer(_limit_check(msg_type, rate, burst or rate), True))
            table[msg_id] = (msg_type, compose(handler, checks + layers))
        for child in self._children:
            child._settings = self._settings
            child._compile_into(table, layers, limits)


def _resolve(value: Rate | None, msg_type: type[Message], router: Router) -> float:
    if value is None or isinstance(value, int | float):
        return float(value or 0)
    settings = router._settings
    if settings is None or not hasattr(settings, value):
        # Framework-level settings (tests that serve a game's router with
        # ServerSettings) lack the game's fields: that limit is off, and said so.
        log.info(
            "%s: setting %r not in these settings; that limit is off",
            msg_type.__qualname__,
            value,
        )
        return 0.0
    return float(getattr(settings, value))


def _limit_check(msg_type: type[Message], rate: float, burst: float) -> Check:
    """A check holding each link to a token bucket for ``msg_type``."""
    name = msg_type.__name__
    text = f"{name} is limited to {rate:g}/s"

    def limited(ctx: Context, msg: Message) -> None:
        link = ctx.link
        buckets = link.buckets
        if buckets is None:
            buckets = link.buckets = {}
        now = time.monotonic()
        bucket = buckets.get(msg_type)
        if bucket is None:
            bucket = buckets[msg_type] = TokenBucket(rate, burst, now)
        if not bucket.take(1, now):
            raise ctx.server.outcomes.over_type_limit(link, name, text)

    limited.__qualname__ = f"limit[{name}]"
    return limited
