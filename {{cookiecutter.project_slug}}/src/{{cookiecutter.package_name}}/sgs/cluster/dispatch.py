"""Envelope dispatch: what arrives on a cluster channel, checked, counted, handed on.

Each envelope is parsed (junk is counted and dropped, never raised), its
per-origin sequence checked (a jump or a new origin epoch counts as a gap),
and its body handed to the one callback for its kind. The sequence table
is pruned: a channel's entries go with its subscription, an origin's with
its node (reaped or gone from the live set).

Drivable alone: feed :meth:`Dispatch.on_message` bytes and read the callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import envelope as env
from .base import ClusterStats

log = logging.getLogger("sgs.cluster")


@dataclass(slots=True)
class Handlers:
    """What the node does with each kind of envelope."""

    group: Callable[[str, bytes], object]  # group name, TLV frame
    push: Callable[[str, bytes], object]  # key, TLV frame
    kick: Callable[[str, int, str], object]  # key, new epoch, node to answer
    released: Callable[[str, int], None]  # key, epoch
    interest: Callable[[bool, str, str], None]  # joined, node, group
    known_message: Callable[[int], bool]  # a message id this server can carry
    room: Callable[[str, bytes], object] = lambda origin, body: None  # origin node, room op
    resume: Callable[[str, bytes], object] = lambda origin, body: None  # origin, resume op


class Dispatch:
    """Parses and routes envelopes for one node (see the module docstring)."""

    def __init__(
        self, *, node_id: str, group_prefix: str, stats: ClusterStats, handlers: Handlers
    ) -> None:
        self.node_id = node_id
        self.group_prefix = group_prefix
        self.stats = stats
        self.handlers = handlers
        self.last: dict[str, dict[str, tuple[int, int]]] = {}

    def on_message(self, channel: str, data: Any) -> None:
        stats = self.stats
        if not isinstance(data, bytes | bytearray):
            stats.junk += 1
            return
        try:
            e = env.unpack(bytes(data))
            if e.origin == self.node_id:
                return  # our own broadcast, already delivered locally
            stats.received += 1
            if e.seq:
                self._track(channel, e)
            self._dispatch(channel, e)
        except env.EnvelopeError as exc:
            stats.junk += 1
            if stats.junk <= 10 or stats.junk % 1000 == 0:
                log.warning("junk on cluster channel %s (%d so far): %s", channel, stats.junk, exc)
        except Exception:
            log.exception("failed to handle an envelope on %s", channel)

    def _track(self, channel: str, e: env.Envelope) -> None:
        seen = self.last.setdefault(channel, {})
        last = seen.get(e.origin)
        if last is not None:
            epoch, seq = last
            if epoch != e.epoch or e.seq != seq + 1:
                self.stats.gaps += 1
        seen[e.origin] = (e.epoch, e.seq)

    def forget_channel(self, channel: str) -> None:
        self.last.pop(channel, None)

    def forget_origin(self, origin: str) -> None:
        """A node is gone (reaped): drop its sequence entries."""
        for channel in list(self.last):
            seen = self.last[channel]
            seen.pop(origin, None)
            if not seen:
                del self.last[channel]

    def forget_origins(self, keep: set[str]) -> None:
        """Drop the sequence entries of origins not in ``keep`` (nodes gone)."""
        for channel in list(self.last):
            seen = self.last[channel]
            for origin in [o for o in seen if o not in keep]:
                del seen[origin]
            if not seen:
                del self.last[channel]

    def _dispatch(self, channel: str, e: env.Envelope) -> None:
        kind = e.kind
        h = self.handlers
        if kind is env.Kind.GROUP:
            if not channel.startswith(self.group_prefix):
                raise env.EnvelopeError("group envelope on a non-group channel")
            self._check_frame(e.body)
            h.group(channel[len(self.group_prefix) :], e.body)
        elif kind is env.Kind.PUSH:
            key, frame = env.unpack_key(e.body)
            self._check_frame(frame)
            h.push(key, frame)
        elif kind is env.Kind.KICK:
            key, epoch, reply_to = env.unpack_kick(e.body)
            h.kick(key, epoch, reply_to)
        elif kind is env.Kind.RELEASED:
            key, epoch = env.unpack_released(e.body)
            h.released(key, epoch)
        elif kind is env.Kind.ROOM:
            h.room(e.origin, e.body)
        elif kind is env.Kind.INTEREST:
            joined, node, group_name = env.unpack_interest(e.body)
            h.interest(joined, node, group_name)
        elif kind is env.Kind.RESUME:
            h.resume(e.origin, e.body)

    def _check_frame(self, frame: bytes) -> None:
        """A frame from the bus must be one whole TLV frame of a known message."""
        if len(frame) < 8:
            raise env.EnvelopeError("frame shorter than a TLV header")
        msg_id = int.from_bytes(frame[:4], "big")
        if int.from_bytes(frame[4:8], "big") != len(frame) - 8:
            raise env.EnvelopeError("TLV length does not match the frame")
        if not self.handlers.known_message(msg_id):
            raise env.EnvelopeError(f"unknown message id {msg_id} in a frame")
