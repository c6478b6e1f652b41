"""Middleware wraps every handler call: ``async def mw(ctx, msg, call_next)``.

Chains are composed once, when the server starts, so a message pays one
coroutine frame per middleware and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .context import Context
from .message import Message

Handler = Callable[[Context, Any], Awaitable[Message | None]]
Middleware = Callable[[Context, Any, Handler], Awaitable[Message | None]]

log = logging.getLogger("sgs.middleware")


def chain(handler: Handler, middleware: list[Middleware]) -> Handler:
    """``middleware[0]`` becomes the outermost wrapper."""
    call = handler
    for mw in reversed(middleware):
        call = _wrap(mw, call)
    return call


def _wrap(mw: Middleware, call_next: Handler) -> Handler:
    # A plain function handing back the middleware's coroutine: awaiting it
    # costs one coroutine frame per middleware, not two.
    def call(ctx: Context, msg: Any) -> Awaitable[Message | None]:
        return mw(ctx, msg, call_next)

    call.__qualname__ = (
        f"{getattr(mw, '__qualname__', mw)}->{getattr(call_next, '__qualname__', '')}"
    )
    return call


async def logging_middleware(ctx: Context, msg: Any, call_next: Handler) -> Message | None:
    """Logs each request and its reply at DEBUG, with link and message ids."""
    extra = {"link_id": ctx.link.id, "msg_id": ctx.msg_id}
    log.debug("link %d <- %s", ctx.link.id, type(msg).__name__, extra=extra)
    resp = await call_next(ctx, msg)
    if resp is not None:
        log.debug("link %d -> %s", ctx.link.id, type(resp).__name__, extra=extra)
    return resp


def timing_middleware(slow_ms: float = 50.0) -> Middleware:
    """Warns about handlers slower than ``slow_ms``: they hold up their whole worker."""

    async def timing(ctx: Context, msg: Any, call_next: Handler) -> Message | None:
        start = time.perf_counter()
        try:
            return await call_next(ctx, msg)
        finally:
            took = (time.perf_counter() - start) * 1000
            if took > slow_ms:
                log.warning(
                    "link %d: %s took %.1f ms",
                    ctx.link.id,
                    type(msg).__name__,
                    took,
                    extra={"link_id": ctx.link.id, "msg_id": ctx.msg_id},
                )

    return timing
