"""Message type -> handler, with middleware in a declared order."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from .builtins import PingReq, PongResp
from .context import Context
from .message import Message
from .middleware import Handler, Middleware, chain

H = TypeVar("H", bound=Handler)


async def _pong(ctx: Context, msg: PingReq) -> PongResp:
    return PongResp(client_time_ms=msg.client_time_ms, server_time_ms=int(time.time() * 1000))


class Router:
    """Collects handlers; one handler per inbound type.

    ``include`` lets a game split handlers over modules, each with its own
    middleware, and still hand one router to the server.
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Message], Handler] = {}
        self._middleware: list[Middleware] = []
        self._children: list[Router] = []

    def on(self, msg_type: type[Message]) -> Callable[[H], H]:
        if msg_type.__msg_id__ is None:
            raise TypeError(f"{msg_type.__qualname__} has no msg_id; it cannot be routed")

        def register(handler: H) -> H:
            if msg_type in self._handlers:
                raise ValueError(f"{msg_type.__qualname__} already has a handler")
            self._handlers[msg_type] = handler
            return handler

        return register

    def use(self, middleware: Middleware) -> Middleware:
        """Add middleware; the first added is the outermost."""
        self._middleware.append(middleware)
        return middleware

    def include(self, other: Router) -> None:
        """Serve ``other``'s handlers too, wrapped in this router's middleware outside theirs."""
        self._children.append(other)

    def compile(self) -> dict[int, tuple[type[Message], Handler]]:
        """msg_id -> (type, composed handler), built once when the server starts."""
        table: dict[int, tuple[type[Message], Handler]] = {}
        self._compile_into(table, [])
        if PingReq.__msg_id__ not in table:
            table[PingReq.__msg_id__] = (PingReq, _pong)  # type: ignore[index]
        return table

    def _compile_into(
        self, table: dict[int, tuple[type[Message], Handler]], outer: list[Middleware]
    ) -> None:
        middleware = outer + self._middleware
        for msg_type, handler in self._handlers.items():
            msg_id: Any = msg_type.__msg_id__
            if msg_id in table:
                raise ValueError(f"{msg_type.__qualname__} has handlers in two routers")
            table[msg_id] = (msg_type, chain(handler, middleware))
        for child in self._children:
            child._compile_into(table, middleware)
