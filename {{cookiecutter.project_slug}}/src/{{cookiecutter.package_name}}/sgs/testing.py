"""Helpers for tests: a real server on 127.0.0.1, started and stopped around a block."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from .framework import Server
from .message import Catalog
from .router import Router
from .settings import ServerSettings


@contextlib.asynccontextmanager
async def running_server(
    router: Router | None = None,
    catalog: Catalog | None = None,
    setup: Callable[[Server], Any] | None = None,
    settings: ServerSettings | None = None,
    **overrides: Any,
) -> AsyncIterator[Server]:
    """Serve on a free port of 127.0.0.1 for the block, then stop gracefully.

    ``overrides`` are settings fields (``protocol="bson"``, ``resource_model=1``...).
    """
    # Attributes, not model_dump(): the dump masks passwords in URLs.
    base = (
        {name: getattr(settings, name) for name in type(settings).model_fields} if settings else {}
    )
    base.update({"host": "127.0.0.1", "port": 0, "drain_timeout": 2.0})
    base.update(overrides)
    cls = type(settings) if settings is not None else ServerSettings
    server = Server(cls(**base), router, catalog)
    if setup is not None:
        setup(server)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
