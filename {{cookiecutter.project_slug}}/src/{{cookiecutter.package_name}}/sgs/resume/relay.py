"""Resuming on another node of the cluster: the connection is relayed to the holding node.

A player's binding, state, room seats and groups live on the node it logged
in on (the *holder*); they are not moved when it resumes elsewhere. When node
B gets ``ResumeReq`` with a valid token but holds no such session, it asks the
broker which node holds the account and sends that node a Resume operation
(:mod:`.wire`). The holder checks the token exactly as a local resume does
and adopts the session with a :class:`~.carrier.RelayedLink` as its carrier:
``ResumeResp``, the replay and every later frame are numbered into the ring
as for a local carrier, and travel to B as Out operations that B writes to
the connection. B relays every frame its connection receives to the holder
(In), where the carrier's worker runs it in the player's context. The cost:
one broker hop each way for that player until it logs in again.

Failure is never a partial replay: an Out lost on the bus leaves a hole in
its numbers, so B closes the connection and the client resumes from what it
really got; when the holder dies (its lease is gone) or the broker is lost, B
closes the relayed connections, and the next resume is answered
``resume_expired`` (nobody holds the session), so the client logs in again
and the game sends a snapshot. A connection that ends makes the holder hold
the player again (the window starts over), as when a local carrier goes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import HandlerError
from ..link import LinkState
from ..outcomes import CloseReason, Reason, as_reason
from .carrier import RelayedLink, RelayTransport
from .messages import RESUME_EXPIRED, RESUME_TOKEN_INVALID, RESUME_TOKEN_USED, ResumeReq
from .wire import Accepted, Close, Gone, In, Kick, Op, Out, Refused, Resume, pack, unpack

if TYPE_CHECKING:
    from ..dispatcher import Frames, LogicWorker
    from ..framework import Server
    from ..link import Link
    from .service import Resumer

log = logging.getLogger("sgs.resume")

_RESUME_REQ = ResumeReq.__msg_id__ or 0


@dataclass(eq=False, slots=True)
class Relayed:
    """A connection of this node whose player is held on ``node``."""

    relay: str
    node: str
    link: Link
    inner: LogicWorker
    pending: list[Frames] | None  # frames received before the holder accepted
    n: int = 0  # the last Out written
    timer: asyncio.TimerHandle | None = None


class RelayWorker:
    """Takes a relayed connection's place at its logic worker: its frames go to the holder.

    Only the link's ``worker`` attribute changes, so reading and the send
    path are untouched; everything but the frames and the end of the
    connection is the real worker's business.
    """

    __slots__ = ("relay", "relayed", "inner", "stall")

    def __init__(self, relay: Relay, relayed: Relayed) -> None:
        self.relay = relay
        self.relayed = relayed
        self.inner = relayed.inner
        self.stall: Any = None

    def post_frames(self, link: Link, frames: Frames) -> None:
        link.inbound_done(len(frames))  # the holder's worker paces them
        relayed = self.relayed
        if relayed.pending is not None:
            relayed.pending.append(frames)
        else:
            self.relay.forward(relayed, frames)

    def post_recv_interrupt(self, link: Link) -> None:
        self.relay.ended(self.relayed)
        self.inner.post_recv_interrupt(link)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Relay:
    """Both sides of relayed resumes on this node (see the module docstring)."""

    def __init__(self, resumer: Resumer) -> None:
        self.resumer = resumer
        self.server: Server = resumer.server
        self.carriers: dict[tuple[str, str], RelayTransport] = {}  # holder side
        self.relays: dict[str, Relayed] = {}  # connection side, by relay id
        self.started = 0  # resumes this node relayed to a holder
        self.lost = 0  # relayed connections closed: a hole in the Outs, or the holder gone
        self.server.on_start(self._start)

    async def _start(self, server: Server) -> None:
        cluster = server.cluster
        if cluster.is_local:
            return
        cluster.on_resume = self.on_op
        server.every(max(0.1, server.settings.cluster_lease / 2), self._check_nodes)

    def _send(self, node: str, op: Op) -> bool:
        return self.server.cluster.resume_send(node, pack(op))

    # -- the connection's side -------------------------------------------------

    async def begin(self, link: Link, account: str, token: str, last_seq: int) -> None:
        """Relay ``link``'s resume to the node holding ``account``; HandlerError when none does."""
        if isinstance(link.worker, RelayWorker):
            raise HandlerError(RESUME_TOKEN_USED, "this connection already resumed a player")
        cluster = self.server.cluster
        node = await cluster.locate(account)
        if node is None or node == cluster.node_id or node not in await cluster.nodes():
            raise HandlerError(RESUME_EXPIRED, "no session to resume: log in again")
        if link.state is not LinkState.OPEN or link.worker is None:
            return
        relayed = Relayed(os.urandom(8).hex(), node, link, link.worker, [])
        if not self._send(node, Resume(relayed.relay, token, last_seq)):
            raise HandlerError(RESUME_EXPIRED, "the node holding the session is out of reach")
        self.started += 1
        self.relays[relayed.relay] = relayed
        link.worker = RelayWorker(self, relayed)  # type: ignore[assignment]
        s = self.server.settings
        wait = 2 * max(s.cluster_timeout, s.cluster_lease)  # the bus's own patience, twice
        relayed.timer = asyncio.get_running_loop().call_later(wait, self._no_answer, relayed)

    def relaying(self, link: Link) -> bool:
        """``link`` is a connection of this node whose player another node holds."""
        return isinstance(link.worker, RelayWorker)

    def forward(self, relayed: Relayed, frames: Frames) -> None:
        if not self._send(relayed.node, In(relayed.relay, frames)):
            self._lose(relayed)

    def ended(self, relayed: Relayed) -> None:
        """The relayed connection ended here: the holder holds its player again."""
        if self._detach(relayed):
            self._send(relayed.node, Gone(relayed.relay))

    def _detach(self, relayed: Relayed) -> bool:
        """Give the link its own worker back; False when it was no longer relayed."""
        if self.relays.pop(relayed.relay, None) is None:
            return False
        if relayed.timer is not None:
            relayed.timer.cancel()
        if relayed.link.worker is not None:
            relayed.link.worker = relayed.inner
        return True

    def _refuse(self, relayed: Relayed, code: str, message: str) -> None:
        """The resume failed: answer on the connection, and its waiting frames are its own again."""
        pending = relayed.pending
        if pending is None or not self._detach(relayed):
            return
        link = relayed.link
        self.server.outcomes.error(link, code, message, _RESUME_REQ)
        for frames in pending:
            link.inbound += len(frames)
            relayed.inner.post_frames(link, frames)

    def _no_answer(self, relayed: Relayed) -> None:
        if relayed.pending is not None:
            self._send(relayed.node, Gone(relayed.relay))  # a late adoption lets go at once
            self._refuse(relayed, RESUME_EXPIRED, "the node holding the session did not answer")

    def _lose(self, relayed: Relayed) -> None:
        """Past a hole, or with its holder gone: close now, unsent frames dropped (never resent)."""
        if self._detach(relayed):
            self.lost += 1
            self._send(relayed.node, Gone(relayed.relay))
            relayed.link.abort()

    def _accepted(self, op: Accepted) -> None:
        relayed = self.relays.get(op.relay)
        if relayed is None or relayed.pending is None:
            return
        if relayed.timer is not None:
            relayed.timer.cancel()
            relayed.timer = None
        pending, relayed.pending = relayed.pending, None
        for frames in pending:
            self.forward(relayed, frames)

    def _out(self, op: Out) -> None:
        relayed = self.relays.get(op.relay)
        if relayed is None:
            return
        if op.n != relayed.n + 1:
            log.warning(
                "relay %s: Out %d after %d (lost on the bus): closing", op.relay, op.n, relayed.n
            )
            self._lose(relayed)
            return
        relayed.n = op.n
        relayed.link.write_frame(op.data)

    def _kick(self, op: Kick) -> None:
        relayed = self.relays.get(op.relay)
        if relayed is not None and self._detach(relayed):
            self.server.outcomes.error(
                relayed.link, "replaced", op.message, close=CloseReason.REPLACED
            )

    def _close(self, op: Close) -> None:
        relayed = self.relays.get(op.relay)
        if relayed is not None and self._detach(relayed):
            relayed.link.close(_reason(op.reason))

    # -- the holder's side ---------------------------------------------------

    def _resume(self, origin: str, op: Resume) -> None:
        resumer = self.resumer
        try:
            claim = resumer.keeper.verify(op.token)
            if claim is None:
                raise HandlerError(
                    RESUME_TOKEN_INVALID, "this is not a resume token of this server"
                )
            session = resumer.check(claim.account, claim.epoch, op.token)
        except HandlerError as exc:
            self._send(origin, Refused(op.relay, exc.code, exc.message))
            return
        transport = RelayTransport(origin, op.relay, self._send, self._forget)
        carrier = RelayedLink(self.server)
        transport.link = carrier
        self.carriers[(origin, op.relay)] = transport
        self._send(origin, Accepted(op.relay))
        carrier.connection_made(transport)  # accepted as any connection (or refused: full)
        if carrier.state is LinkState.OPEN:
            resumer.adopt(session, carrier, op.last_seq)

    def _in(self, origin: str, op: In) -> None:
        transport = self.carriers.get((origin, op.relay))
        if transport is None:  # nobody here to carry: the connection must go
            self._send(origin, Close(op.relay, CloseReason.LOCAL.value))
            return
        link = transport.link
        if link is None or link.state is not LinkState.OPEN or link.worker is None:
            return
        link.seen = True
        link.inbound += len(op.frames)
        link.worker.post_frames(link, op.frames)

    def _gone(self, origin: str, op: Gone) -> None:
        transport = self.carriers.get((origin, op.relay))
        if transport is not None:
            transport.gone()

    def _forget(self, transport: RelayTransport) -> None:
        self.carriers.pop((transport.node, transport.relay), None)

    # -- both ------------------------------------------------------------------

    def on_op(self, origin: str, body: bytes) -> None:
        """A resume operation from another node (the cluster's listener calls this)."""
        try:
            op = unpack(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.server.cluster.stats.junk += 1
            return
        if isinstance(op, In):
            self._in(origin, op)
        elif isinstance(op, Out):
            self._out(op)
        elif isinstance(op, Resume):
            self._resume(origin, op)
        elif isinstance(op, Accepted):
            self._accepted(op)
        elif isinstance(op, Refused):
            relayed = self.relays.get(op.relay)
            if relayed is not None:
                self._refuse(relayed, op.code, op.message)
        elif isinstance(op, Gone):
            self._gone(origin, op)
        elif isinstance(op, Kick):
            self._kick(op)
        elif isinstance(op, Close):
            self._close(op)

    async def _check_nodes(self) -> None:
        """A node gone from the live set takes its relays with it, on either side."""
        if not self.relays and not self.carriers:
            return
        live = set(await self.server.cluster.nodes())  # this node alone: the broker is lost
        for relayed in [r for r in self.relays.values() if r.node not in live]:
            log.info(
                "relay %s: node %s is gone: closing the connection", relayed.relay, relayed.node
            )
            self._lose(relayed)
        for transport in [t for t in self.carriers.values() if t.node not in live]:
            transport.drop()


def _reason(label: str) -> Reason:
    try:
        return as_reason(label)
    except ValueError:
        return CloseReason.LOCAL
