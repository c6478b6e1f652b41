"""The real endpoint: ``prometheus-client`` exposition over :class:`HttpEndpoint`.

Besides serving, it runs one small probe task: every quarter second it
measures how late the event loop wakes it (the loop lag histogram), and
every few seconds, on a cluster node, it asks how many nodes hold a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from .base import Metrics, MetricsPortError, readiness
from .collector import ServerCollector
from .http import HttpEndpoint, Response

if TYPE_CHECKING:
    from ..framework import Server

log = logging.getLogger("sgs.metrics")

PROBE_INTERVAL = 0.25
NODES_EVERY = 5.0
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PrometheusMetrics(Metrics):
    """/metrics (Prometheus text format), /healthz and /readyz on ``metrics_port``."""

    enabled = True

    def __init__(self, server: Server) -> None:
        self.server = server
        self.registry = CollectorRegistry()
        self.extra: dict[str, float] = {}
        self.registry.register(ServerCollector(server, self.extra))
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.loop_lag = Histogram(
            "sgs_event_loop_lag_seconds",
            "How late a timer set on the event loop fires (sampled 4 times a second).",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.http = HttpEndpoint(
            {"/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz}
        )
        self.registry.register(_EndpointCollector(self.http))
        self._address: tuple[str, int] | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        return self._address

    async def start(self) -> None:
        host, port = self.server.settings.metrics_address
        try:
            self._address = await self.http.start(host, port)
        except OSError as exc:
            raise MetricsPortError(
                exc.errno, f"metrics_port {port} on {host or '*'}: {exc.strerror or exc}"
            ) from exc
        self._probe = asyncio.get_running_loop().create_task(
            self._run_probe(), name="metrics-probe"
        )
        log.info("metrics on http://%s:%d/metrics (also /healthz, /readyz)", *self._address)

    async def stop(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        await self.http.stop()

    # -- routes -------------------------------------------------------------

    def _metrics(self) -> Response:
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def _healthz(self) -> Response:
        # Answering at all proves the event loop turns: this runs on it.
        lag = self.extra.get("loop_lag", 0.0)
        return Response(200, f"ok: event loop lag {lag * 1000:.1f} ms\n".encode())

    def _readyz(self) -> Response:
        ready, why = readiness(self.server)
        return Response(200 if ready else 503, f"{why}\n".encode())

    # -- the probe ----------------------------------------------------------

    async def _run_probe(self) -> None:
        loop = asyncio.get_running_loop()
        next_nodes = 0.0
        nodes: asyncio.Task[None] | None = None
        while True:
            expected = loop.time() + PROBE_INTERVAL
            await asyncio.sleep(PROBE_INTERVAL)
            lag = max(0.0, loop.time() - expected)
            self.extra["loop_lag"] = lag
            self.loop_lag.observe(lag)
            cluster = self.server.cluster
            if (
                not cluster.is_local
                and loop.time() >= next_nodes
                and (nodes is None or nodes.done())
            ):
                next_nodes = loop.time() + NODES_EVERY
                nodes = loop.create_task(self._count_nodes())

    async def _count_nodes(self) -> None:
        try:
            found = await asyncio.wait_for(self.server.cluster.nodes(), NODES_EVERY)
        except Exception as exc:  # the broker is down: keep the last figure
            log.debug("metrics: cannot count cluster nodes: %s", exc)
            return
        self.extra["nodes"] = len(found)


class _EndpointCollector(Collector):
    """The endpoint's own bad clients: counted, never logged one by one."""

    def __init__(self, http: HttpEndpoint) -> None:
        self.http = http

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        return [
            CounterMetricFamily(
                "sgs_metrics_rejected",
                "Requests on the metrics port answered 4xx, or dropped over the client limit.",
                value=self.http.rejected,
            )
        ]
