"""What runs around a handler: middleware, checks, and the slow-handler warning.

Three kinds of layer, all added with ``Router.use`` and composed once, when
the server starts:

- **Middleware** ``async def mw(ctx, msg, call_next)`` wraps the call: it can
  await, change the reply, or not call the handler at all. Each costs one
  coroutine frame per message.
- **A check** ``def check(ctx, msg) -> None`` only decides whether the message
  may go on, by raising :class:`HandlerError` (answered ``Error(code)``) to
  refuse it. A check is a plain call before the handler: no coroutine, no
  wrapper per check, so a chain of conditions costs what the conditions do.
- **timing_middleware(slow_ms)** is not called per message at all: the logic
  worker already reads the clock once per pass (and once more when the
  message type changes), and warns about the runs that took too long.

A handler is ``async def`` when it awaits, or a plain ``def`` when it does
not: a plain handler runs without a coroutine per call. The composed call is
plain only while every layer around it is (checks keep it plain, middleware
makes it a coroutine).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from .context import Context
from .message import Message

#: ``async def`` or plain ``def``: returns the reply (or None), or a coroutine of it.
Handler = Callable[[Context, Any], Any]
Middleware = Callable[[Context, Any, Handler], Awaitable[Message | None]]
#: Raises HandlerError to refuse a message; returns None to let it through.
Check = Callable[[Context, Any], None]

log = logging.getLogger("sgs.middleware")


class Route:
    """One message type's composed call, as the logic worker runs it."""

    __slots__ = ("call", "is_async", "slow")

    def __init__(self, call: Handler, is_async: bool, slow: float) -> None:
        self.call = call
        self.is_async = is_async  # await the call's result
        self.slow = slow  # seconds; a run of messages slower than this is logged


class Layer(NamedTuple):
    """A middleware or a check, classified once when it is added."""

    fn: Callable[..., Any]
    is_check: bool


def layer(fn: Callable[..., Any]) -> Layer:
    """Classify ``fn`` by its shape; refuse what is neither middleware nor a check."""
    name = getattr(fn, "__qualname__", repr(fn))
    if getattr(fn, "slow_ms", None) is not None:  # timing_middleware
        return Layer(fn, False)
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):  # no signature (some builtins): treat as middleware
        return Layer(fn, False)
    if len(params) == 3:
        return Layer(fn, False)
    if len(params) == 2:
        if inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"{name}: a check never awaits; make it a plain def, "
                "or take call_next to be middleware"
            )
        return Layer(fn, True)
    raise TypeError(
        f"{name}: middleware is `async def mw(ctx, msg, call_next)`, "
        "a check is `def check(ctx, msg)` (raise HandlerError to refuse)"
    )


def is_async(handler: Handler) -> bool:
    """True when calling ``handler`` gives a coroutine to await."""
    # A coroutine function, or an object whose class has an async __call__.
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        type(handler).__call__
    )


def compose(handler: Handler, layers: list[Layer]) -> Route:
    """``layers[0]`` becomes the outermost; built once per message type."""
    if is_async(handler):
        call, run_async = handler, True
    elif inspect.isroutine(handler):
        call, run_async = handler, False
    else:  # some other callable: it may hand back a reply or an awaitable
        call, run_async = _as_coroutine(handler), True
    slow = math.inf
    checks: list[Check] = []  # consecutive checks, innermost last, folded into one call
    for item in reversed(layers):
        threshold = getattr(item.fn, "slow_ms", None)
        if threshold is not None:
            slow = min(slow, float(threshold) / 1000.0)
        elif item.is_check:
            checks.insert(0, item.fn)
        else:
            if checks:
                call, checks = _checked(tuple(checks), call), []
            if not run_async:
                call, run_async = _as_coroutine(call), True
            call = _wrap(item.fn, call)
    if checks:
        call = _checked(tuple(checks), call)
    return Route(call, run_async, slow)


def _checked(checks: tuple[Check, ...], inner: Handler) -> Handler:
    """``inner`` behind ``checks``: plain calls, and ``inner``'s own kind of result."""
    if len(checks) == 1:
        (check,) = checks

        def checked(ctx: Context, msg: Any) -> Any:
            check(ctx, msg)
            return inner(ctx, msg)

    else:

        def checked(ctx: Context, msg: Any) -> Any:
            for check in checks:
                check(ctx, msg)
            return inner(ctx, msg)

    names = ",".join(getattr(c, "__qualname__", "?") for c in checks)
    checked.__qualname__ = f"[{names}]->{getattr(inner, '__qualname__', '')}"
    return checked


def _as_coroutine(inner: Handler) -> Handler:
    """A plain handler (or another callable) where a coroutine is needed: inside
    middleware, which awaits ``call_next``. An awaitable it returns is awaited."""

    async def call(ctx: Context, msg: Any) -> Message | None:
        result = inner(ctx, msg)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    call.__qualname__ = getattr(inner, "__qualname__", repr(inner))
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
    return resp  # type: ignore[no-any-return]


def timing_middleware(slow_ms: float = 50.0) -> Middleware:
    """Warn about handlers slower than ``slow_ms``: they hold up their whole worker.

    On a router this is a declaration, not a wrapper: the logic worker times
    each run of consecutive messages of one type in a pass (one clock read per
    run, the same reads the metrics use) and logs the runs over ``slow_ms``,
    with the link, the type and how many messages the run held. Called by
    hand around a ``call_next``, it times that one call.
    """
    if slow_ms <= 0:
        raise ValueError("slow_ms must be positive")

    async def timing(ctx: Context, msg: Any, call_next: Handler) -> Message | None:
        start = time.perf_counter()
        try:
            result = call_next(ctx, msg)
            if inspect.isawaitable(result):
                result = await result
            return result  # type: ignore[no-any-return]
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

    timing.slow_ms = slow_ms  # type: ignore[attr-defined]
    return timing
