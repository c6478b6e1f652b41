"""Agones: tell the SDK sidecar when this game server is Ready, healthy and done.

``make_agones(server)`` picks the implementation from the ``agones`` setting:
off (the default) gives :class:`LocalAgones`, which does nothing; on gives
:class:`~.sdk.SdkAgones`, which talks to the sidecar's REST gateway on
``agones_sdk_port`` (``AGONES_SDK_HTTP_PORT``, 9358 when unset). There is no
asyncio Agones SDK on the package index, so the gateway is spoken directly
(``http.py``: a small HTTP/1.1 client over asyncio streams).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Agones, AllocatedHook, LocalAgones

if TYPE_CHECKING:
    from ..framework import Server

__all__ = ["Agones", "AllocatedHook", "LocalAgones", "make_agones"]


def make_agones(server: Server) -> Agones:
    if not server.settings.agones:
        return LocalAgones()
    from .sdk import SdkAgones

    return SdkAgones(server)
