"""``top``: a live terminal table read from a server's /metrics once a second.

Two scrapes a second apart give rates; the handler histogram's count and sum
give what go-sgs's monitor reports per message type (queries per second and
average milliseconds), and its buckets a p99 over the last interval.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families

from .scrape import Unreachable, http_get

CLEAR = "\x1b[H\x1b[2J"


@dataclass
class Snapshot:
    """The figures top shows, read from one scrape."""

    at: float
    frames: dict[str, float] = field(default_factory=dict)  # handled, by message type
    seconds: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    links: dict[str, float] = field(default_factory=dict)  # open, by transport
    errors: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    ready: bool | None = None
    loop_lag: float | None = None


def parse(text: str, at: float) -> Snapshot:
    snap = Snapshot(at)
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "sgs_handler_seconds_count":
                snap.frames[labels["message"]] = value
            elif name == "sgs_handler_seconds_sum":
                snap.seconds[labels["message"]] = value
            elif name == "sgs_handler_seconds_bucket":
                buckets[labels["message"]].append((float(labels["le"]), value))
            elif name == "sgs_links_open":
                snap.links[labels.get("transport", "?")] = value
            elif name == "sgs_errors_total":
                snap.errors[labels["code"]] = value
            elif name == "sgs_ready":
                snap.ready = bool(value)
            elif name == "sgs_event_loop_lag_last_seconds":
                snap.loop_lag = value
            elif name in (
                "sgs_send_dropped_total",
                "sgs_send_overflows_total",
                "sgs_links_accepted_total",
            ):
                snap.counters[name] = value
    snap.buckets = {k: sorted(v) for k, v in buckets.items()}
    return snap


def quantile(
    q: float, now: list[tuple[float, float]], before: list[tuple[float, float]]
) -> float | None:
    """The ``q`` quantile of the observations between two scrapes (bucket upper bound)."""
    old = dict(before)
    delta = [(le, count - old.get(le, 0.0)) for le, count in now]
    total = delta[-1][1] if delta else 0.0
    if total <= 0:
        return None
    for le, count in delta:
        if count >= q * total:
            return le
    return None


def _ms(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "-" if seconds is None else ">10s"
    return f"{seconds * 1000:.3f}"


def render(url: str, now: Snapshot, before: Snapshot | None) -> str:
    span = (now.at - before.at) if before else 0.0

    def rate(cur: float, old: float | None) -> str:
        return f"{(cur - (old or 0.0)) / span:,.1f}" if before and span > 0 else "-"

    ready = {True: "ready", False: "NOT READY", None: "?"}[now.ready]
    links = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(now.links.items())) or "0"
    lag = _ms(now.loop_lag)
    lines = [
        f"{url}   {time.strftime('%H:%M:%S')}   {ready}   links open: {links}   loop lag {lag} ms",
        "",
        f"{'message':<24} {'rate/s':>10} {'avg ms':>9} {'p99 ms':>9} {'total':>12}",
    ]
    for name in sorted(now.frames, key=lambda n: -now.frames[n]):
        count = now.frames[name]
        old_count = before.frames.get(name, 0.0) if before else 0.0
        old_sum = before.seconds.get(name, 0.0) if before else 0.0
        handled = count - old_count if before else count
        took = now.seconds.get(name, 0.0) - (old_sum if before else 0.0)
        avg = took / handled if handled > 0 else None
        p99 = quantile(
            0.99, now.buckets.get(name, []), before.buckets.get(name, []) if before else []
        )
        lines.append(
            f"{name:<24} {rate(count, old_count):>10} {_ms(avg):>9} {_ms(p99):>9} {count:>12,.0f}"
        )
    errors = sum(now.errors.values())
    old_errors = sum(before.errors.values()) if before else 0.0
    by_code = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(now.errors.items()) if v)
    c = now.counters
    lines += [
        "",
        f"errors sent: {errors:,.0f} ({rate(errors, old_errors)}/s){'  ' + by_code if by_code else ''}",
        f"dropped pushes: {c.get('sgs_send_dropped_total', 0):,.0f}   "
        f"send overflows: {c.get('sgs_send_overflows_total', 0):,.0f}   "
        f"links accepted: {c.get('sgs_links_accepted_total', 0):,.0f}",
        "",
        "Ctrl-C to quit",
    ]
    return "\n".join(lines)


def run(
    url: str,
    interval: float = 1.0,
    count: int = 0,
    out: TextIO = sys.stdout,
    timeout: float = 3.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Refresh every ``interval`` s (``count`` times, 0: until Ctrl-C); the exit code.

    1 when the first scrape fails (the message says why and what to check);
    a later failure is shown on screen and retried, so a restarting server
    comes back by itself.
    """
    clear = CLEAR if out.isatty() else ""
    before: Snapshot | None = None
    shown = 0
    try:
        while True:
            try:
                status, body = http_get(url, timeout)
                if status != 200:
                    raise Unreachable(f"HTTP {status}: {body.strip()[:200]}")
                snap = parse(body, time.monotonic())
            except (Unreachable, ValueError) as exc:
                message = f"cannot read metrics from {url}: {exc}"
                if before is None:
                    print(
                        f"{message}\n(is the server running with metrics_port set?)",
                        file=sys.stderr,
                    )
                    return 1
                out.write(f"{clear}{message}; retrying every {interval:g}s (Ctrl-C to quit)\n")
                out.flush()
            else:
                out.write(clear + render(url, snap, before) + "\n" + ("" if clear else "\n"))
                out.flush()
                before = snap
            shown += 1
            if count and shown >= count:
                return 0
            sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        return 0
