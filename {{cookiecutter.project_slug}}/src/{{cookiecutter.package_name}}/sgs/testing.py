"""Helpers for tests and harnesses.

A real server on 127.0.0.1, started and stopped around a block; and a link
fed by hand through a stand-in transport, for the fuzzer and the instruction
count, which drive ``data_received`` directly and read what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from .framework import Server
from .link import Link
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
    if settings is not None and settings.ws_port_follows_port:
        if "ws_port" not in settings.model_fields_set:
            # Derived from the configured port (6666 + 1): port 0 derives 0 instead,
            # or two servers of one test run would both bind the default + 1.
            del base["ws_port"]
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


class StandInTransport(asyncio.Transport):
    """A link's transport without a socket: keeps every byte written, never blocks.

    What a link writes arrives in :attr:`data` during the call that wrote it,
    so a caller also sees *when* replies leave (in the read callback, or later
    from the writer).
    """

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def stand_in_link(server: Server) -> tuple[Link, StandInTransport]:
    """A link of ``server``, accepted over a :class:`StandInTransport`; feed it by hand."""
    transport = StandInTransport()
    link = Link(server)
    link.connection_made(transport)
    return link, transport
