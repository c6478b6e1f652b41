"""Log output: today's readable lines, or one JSON object a line for log pipelines.

The framework passes ``link_id``, ``msg_id`` and ``peer`` as ``extra`` on the
records that concern one link; the JSON form carries them as fields, plus
the node id, so a log store can filter one player's connection across nodes
without parsing message text.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: Record attributes copied into the JSON object when a log call passed them.
CONTEXT_FIELDS = ("link_id", "msg_id", "peer", "node")


def peer_text(peer: Any) -> str | None:
    """``("1.2.3.4", 5678)`` as ``"1.2.3.4:5678"``; what logs and metrics show of a peer."""
    if peer is None:
        return None
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the context fields."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = peer_text(value) if name == "peer" else value
        if self.node is not None:
            doc.setdefault("node", self.node)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text", node: str | None = None) -> None:
    """Send every record to stderr, in ``log_format`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(node))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class RateLimitedLog:
    """At most ``per_second`` lines a second; the rest are counted and reported once."""

    def __init__(self, logger: logging.Logger, per_second: int = 5) -> None:
        self.logger = logger
        self.per_second = per_second
        self.second = 0
        self.lines = 0
        self.suppressed = 0

    def warning(self, fmt: str, *args: Any) -> None:
        now = int(time.monotonic())
        if now != self.second:
            if self.suppressed:
                self.logger.warning("... %d similar lines suppressed", self.suppressed)
            self.second, self.lines, self.suppressed = now, 0, 0
        if self.lines < self.per_second:
            self.lines += 1
            self.logger.warning(fmt, *args)
        else:
            self.suppressed += 1
