"""Operations: Prometheus metrics, health and readiness over HTTP.

``make_metrics(server)`` gives :class:`PrometheusMetrics` when
``metrics_port`` is set and :class:`NullMetrics` when it is 0; the
``prometheus-client`` package is imported only in the first case.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Metrics, MetricsPortError, NullMetrics, readiness
from .meter import LATENCY_BUCKETS, TypeMeter, WorkerUsage

if TYPE_CHECKING:
    from ..framework import Server

__all__ = [
    "LATENCY_BUCKETS",
    "Metrics",
    "MetricsPortError",
    "NullMetrics",
    "TypeMeter",
    "WorkerUsage",
    "make_metrics",
    "readiness",
]


def make_metrics(server: Server) -> Metrics:
    if not server.settings.metrics_port:
        return NullMetrics()
    from .prometheus import PrometheusMetrics

    return PrometheusMetrics(server)
