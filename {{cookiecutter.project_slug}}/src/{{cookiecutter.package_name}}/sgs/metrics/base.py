"""The metrics contract, the no-op used when ``metrics_port`` is 0, and readiness.

The server holds one :class:`Metrics`. The hot path never calls it: it only
reads ``enabled`` once per worker (whether to time messages), so turning
metrics off costs nothing at all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..framework import Server


class MetricsPortError(OSError):
    """The metrics port cannot be bound; the message names ``metrics_port``."""


class Metrics(ABC):
    """The operations endpoint of one server: /metrics, /healthz, /readyz."""

    #: Workers time each message and their busy share when True.
    enabled: bool = False

    @abstractmethod
    async def start(self) -> None:
        """Serve the endpoint; raises :class:`MetricsPortError` when the port is taken."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop serving (after the game server has stopped: /healthz answers to the end)."""

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the endpoint listens, once started (None when disabled)."""
        return None


class NullMetrics(Metrics):
    """``metrics_port = 0``: nothing is served and nothing is timed."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def readiness(server: Server) -> tuple[bool, str]:
    """(ready, why): listening and accepting, not draining, holding the cluster lease and hearing the broker.

    A load balancer or orchestrator stops sending players as soon as this
    turns False; the process itself may still be healthy (finishing a drain,
    or waiting for the broker to come back).
    """
    if server.draining:
        return False, "draining: a graceful stop has begun"
    if not server.is_serving:
        return False, "not listening yet"
    cluster = server.cluster
    if not cluster.is_local:
        return cluster.ready
    return True, "ready"
