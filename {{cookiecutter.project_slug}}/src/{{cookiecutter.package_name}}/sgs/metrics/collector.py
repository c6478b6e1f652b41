"""Read the server's plain counters into Prometheus metric families at scrape time.

Nothing here runs between scrapes: the hot path keeps ints on ``Stats``,
``TypeMeter`` and ``WorkerUsage`` objects, and this collector turns them into
families (``sgs_`` prefix, base units, ``_total`` on counters) when
Prometheus asks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..outcomes import REFUSALS, close_labels
from .base import readiness
from .meter import TypeMeter

if TYPE_CHECKING:
    from ..framework import Server


#: Series exported at 0 before anything happened, so dashboards and alerts see
#: them from the first scrape (a game's own HandlerError codes appear when used).
ERROR_CODES = (
    "unknown_message",
    "no_handler",
    "decode_error",
    "frame_too_large",
    "internal",
    "idle_timeout",
    "server_full",
    "rate_limited",
    "frame_timeout",
    "too_many_connections",
    "partial_frame",
    "replaced",
)
REFUSE_REASONS = tuple(REFUSALS)


def _zeros(keys: tuple[str, ...], table: dict[str, int]) -> dict[str, int]:
    return {**dict.fromkeys(keys, 0), **table}


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _by(name: str, doc: str, label: str, table: dict[str, Any], kind: str = "counter") -> Metric:
    family: Any = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
        name, doc, labels=[label]
    )
    for key, value in sorted(table.items()):
        family.add_metric([key], value)
    return family


class ServerCollector(Collector):
    """Every figure of one :class:`Server`, read when scraped."""

    def __init__(self, server: Server, extra: dict[str, float] | None = None) -> None:
        self.server = server
        self.extra = extra if extra is not None else {}  # gauges kept by the probe task

    def describe(self) -> list[Metric]:
        return []  # unchecked: collect() reads live objects, registering must not

    def collect(self) -> Iterator[Metric]:
        server = self.server
        stats = server.stats
        ready, _why = readiness(server)
        yield _gauge("sgs_ready", "1 while /readyz answers ready.", 1 if ready else 0)
        yield _by(
            "sgs_links_open",
            "Links open now, by transport.",
            "transport",
            {"tcp": 0, "ws": 0, **Counter(link.transport_name for link in server.links.values())},
            kind="gauge",
        )
        yield _counter("sgs_links_accepted", "Connections accepted as links.", stats.accepted)
        yield _by(
            "sgs_links_refused",
            "Connections refused, by reason (full, shutting_down, max_connections_per_ip, "
            "accept_rate, origin, proxy_untrusted, proxy_header).",
            "reason",
            _zeros(REFUSE_REASONS, stats.refused_by),
        )
        yield _by(
            "sgs_links_closed",
            "Links closed, by reason.",
            "reason",
            _zeros(close_labels(), stats.closed_by),
        )
        yield from self._frames()
        yield _by(
            "sgs_errors",
            "Error messages sent to clients, by code.",
            "code",
            _zeros(ERROR_CODES, stats.errors),
        )
        yield _counter(
            "sgs_protocol_errors",
            "Frames with an unknown id, an undecodable value or an oversized length, and "
            "WebSocket messages that break the transport's rules.",
            stats.protocol_errors,
        )
        yield _counter(
            "sgs_throttled",
            "Times a link's reading paused for its inbound byte or message budget.",
            stats.throttled,
        )
        yield _counter(
            "sgs_handler_errors",
            "Handler calls that raised (not HandlerError).",
            stats.handler_errors,
        )
        yield _counter(
            "sgs_send_dropped",
            "Messages dropped on a full send side (send_overflow = drop).",
            stats.dropped,
        )
        yield _counter(
            "sgs_send_overflows",
            "Links closed because their send side was full (send_overflow = close).",
            stats.send_overflows,
        )
        yield from self._workers()
        yield _gauge(
            "sgs_event_loop_lag_last_seconds",
            "How late the last event-loop probe woke up.",
            self.extra.get("loop_lag", 0.0),
        )
        yield from self._cluster()
        yield from self._store()

    def _frames(self) -> Iterator[Metric]:
        stats = self.server.stats
        meters: list[TypeMeter] = self.server.meters
        received = CounterMetricFamily(
            "sgs_frames_received",
            "Frames received with a routable id, by message type (decoded or not).",
            labels=["message"],
        )
        latency = HistogramMetricFamily(
            "sgs_handler_seconds",
            "Seconds to decode, handle and encode a message, by message type (timed per run "
            "of same-type messages in one read: sum and count exact, buckets at the run's mean).",
            labels=["message"],
        )
        for meter in sorted(meters, key=lambda m: m.name):
            received.add_metric([meter.name], meter.count + meter.decode_errors)
            latency.add_metric([meter.name], meter.cumulative(), meter.seconds)
        yield received
        yield latency
        yield _counter("sgs_frames_in", "Frames received, every id.", stats.frames_in)
        yield _counter("sgs_frames_out", "Frames written.", stats.frames_out)
        yield _counter("sgs_received_bytes", "Bytes read from links.", stats.bytes_in)
        yield _counter("sgs_sent_bytes", "Bytes written to links.", stats.bytes_out)

    def _workers(self) -> Iterator[Metric]:
        dispatcher = self.server.dispatcher
        depth = GaugeMetricFamily(
            "sgs_worker_queue_depth",
            "Frames waiting for a logic worker (per_link: all per-link workers together).",
            labels=["worker"],
        )
        busy = CounterMetricFamily(
            "sgs_worker_busy_seconds",
            "Seconds a logic worker spent handling frames; its rate is the busy share.",
            labels=["worker"],
        )
        if dispatcher is not None:
            for worker in dispatcher.logic:
                depth.add_metric([worker.name], worker.waiting)
                busy.add_metric([worker.name], worker.usage.busy_seconds)
            if dispatcher.per_link_logic:
                waiting = sum(
                    link.worker.waiting
                    for link in self.server.links.values()
                    if link.worker is not None and link.worker.owner is link
                )
                depth.add_metric(["per_link"], waiting)
                busy.add_metric(["per_link"], dispatcher.per_link_usage.busy_seconds)
        yield depth
        yield busy

    def _cluster(self) -> Iterator[Metric]:
        cluster = self.server.cluster
        if cluster.is_local:
            return
        yield _gauge(
            "sgs_cluster_nodes",
            "Nodes holding a lease (as last asked).",
            self.extra.get("nodes", 0),
        )
        yield _gauge("sgs_cluster_connected", "1 while the broker answers.", int(cluster.connected))
        yield _gauge(
            "sgs_cluster_lease_held",
            "1 while this node's lease is current.",
            int(cluster.lease_held),
        )
        figures = cluster.stats.as_dict()
        docs = {
            "published": "Envelopes handed to the broker.",
            "received": "Envelopes read from the broker.",
            "dropped": "Envelopes not delivered (queue full, broker down, publish failed).",
            "gaps": "Sequence jumps and origin epoch changes seen.",
            "junk": "Unreadable messages on a cluster channel.",
            "reconnects": "Broker connections re-established.",
            "reaped": "Dead nodes this node cleaned up.",
            "fenced": "Times this node found its lease gone and re-registered.",
            "kicks": "Logins here that replaced a link on another node.",
        }
        for key, doc in docs.items():
            yield _counter(f"sgs_cluster_{key}", doc, figures.get(key, 0))

    def _store(self) -> Iterator[Metric]:
        store = self.server.store
        stats = store.stats
        yield _counter("sgs_store_flushes", "Store transactions written.", stats.flushes)
        yield _counter("sgs_store_keys_flushed", "Player states written.", stats.keys_flushed)
        yield _counter(
            "sgs_store_failures", "Store transactions that failed (retried).", stats.failures
        )
        yield _counter(
            "sgs_store_fenced",
            "States dropped or logins refused: a newer owner holds them.",
            stats.fenced,
        )
        yield _counter(
            "sgs_store_refused",
            "Logins refused: backend down or too many dirty states.",
            stats.refused,
        )
        yield _gauge(
            "sgs_store_dirty_keys", "Player states with changes not yet durable.", stats.dirty
        )
        yield _gauge("sgs_store_cached_keys", "Player states in memory.", stats.cached)
        yield _gauge(
            "sgs_store_healthy", "1 while the store's backend answers.", int(store.healthy)
        )
