"""Holding a dropped player for ``resume_window`` seconds, and resuming it on a new link.

The link a player logged in on stays its identity for good: the player's
binding, room seats and groups keep pointing at it. When its connection
drops without a logout, :meth:`Resumer.intercept` keeps that link (not
finalized: no disconnect hooks, no ``on_leave``) and what is sent to it goes
into its :class:`.Ring` only. ``ResumeReq`` on a new connection makes that
connection the identity link's *carrier*: the identity forwards every frame
to it, and the dispatcher runs the carrier's messages in the identity's
context (``carrier._ctx is identity.ctx``), so handlers see the same link,
session and rooms as before the drop. When the window passes, the identity
link is finalized as any closed link is: disconnect hooks, ``on_leave(player,
consented=False)``, the binding released. A resume on another node of the
cluster is relayed here (:mod:`.relay`): the carrier is then a
:class:`~.carrier.RelayedLink` standing for that node's connection, and
everything above holds unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import HandlerError
from ..link import LinkState
from ..outcomes import CloseReason
from ..router import Router
from .carrier import RelayedLink
from .messages import (
    RESUME_EXPIRED,
    RESUME_TOKEN_INVALID,
    RESUME_TOKEN_USED,
    RESUME_WRONG_ACCOUNT,
    ResumeReq,
    ResumeResp,
)
from .relay import Relay
from .ring import Ring
from .token import TokenKeeper

if TYPE_CHECKING:
    from ..context import Context
    from ..framework import Server
    from ..link import Link

log = logging.getLogger("sgs.resume")

#: ``hook(link)``: the identity link of a player that dropped, resumed, or needs a snapshot.
SessionHook = Callable[["Link"], Awaitable[None] | None]


@dataclass(eq=False, slots=True)
class Session:
    """One resumable player: its identity link, the link carrying it now, its ring."""

    account: str
    epoch: int
    link: Link
    ring: Ring
    token: str
    live: Link | None
    dropped: bool = False
    closed: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class Resumer:
    """This node's resumable sessions, by account."""

    def __init__(self, server: Server) -> None:
        self.server = server
        s = server.settings
        self.window: float = s.resume_window
        self.keeper = TokenKeeper(secret_of(s.resume_secret, s.cluster_url))
        self.sessions: dict[str, Session] = {}
        self._hooks: dict[str, list[SessionHook]] = {"drop": [], "resume": [], "snapshot": []}
        self.resumed = 0
        self.unrecovered = 0
        self.expired = 0
        #: Resumes on another node than the holder's, relayed through the holder.
        self.relay = Relay(self)

    @property
    def enabled(self) -> bool:
        return self.window > 0

    def on_drop(self, fn: SessionHook) -> SessionHook:
        """``fn(link)`` runs when a logged-in link dropped and its player is held."""
        self._hooks["drop"].append(fn)
        return fn

    def on_resume(self, fn: SessionHook) -> SessionHook:
        """``fn(link)`` runs when a held player was resumed."""
        self._hooks["resume"].append(fn)
        return fn

    def on_snapshot(self, fn: SessionHook) -> SessionHook:
        """``fn(link)`` sends the player's full state: a resume that could not replay."""
        self._hooks["snapshot"].append(fn)
        return fn

    async def _run(self, name: str, link: Link) -> None:
        for fn in self._hooks[name]:
            try:
                result = fn(link)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("resume %s hook %r raised", name, fn)

    # -- arming ------------------------------------------------------------

    def arm(self, link: Link) -> Session:
        """Make ``link``'s player resumable (its outbound sequence starts at 0 here)."""
        session = link.resume
        if session is not None:
            return session
        player = self.server.player_of(link)
        if player is None:
            raise HandlerError("not_logged_in", "log in before arming resumption")
        s = self.server.settings
        session = Session(
            account=player.key,
            epoch=player.epoch,
            link=link,
            ring=Ring(s.resume_buffer, s.resume_buffer_bytes),
            token=self.keeper.issue(player.key, player.epoch),
            live=link,
        )
        link.resume = session
        self.sessions[player.key] = session
        return session

    # -- dropping ------------------------------------------------------------

    def intercept(self, link: Link) -> bool:
        """Called as ``link`` is finalized: True keeps it (a held or resumed identity).

        A carrier link finalizes normally (it is anonymous itself); the player it
        carried is held again, or finalized when it can no longer be held.
        """
        session = link.resume
        if session is None or session.closed:
            return False
        if link is not session.link:  # a carrier went
            link.resume = None
            if session.live is link:
                session.live = None
                if not self._hold(session):
                    self._end(session)
            return False
        if session.live is None or session.live is link:
            session.live = None
            if self._hold(session):
                return True
            session.closed = True
            link.resume = None
            self._forget(session)
            return False
        return True  # the identity's old connection ended after a resume moved it

    def _hold(self, session: Session) -> bool:
        server = self.server
        link = session.link
        if not self.enabled or server.draining or server.player_of(link) is None:
            return False
        link.state = LinkState.CLOSED
        server.links.pop(link.id, None)
        if session.timer is not None:
            session.timer.cancel()
        session.timer = asyncio.get_running_loop().call_later(
            self.window, server.post, lambda: self._expire(session), link
        )
        session.dropped = True
        server.post(lambda: self._run("drop", link), link)
        return True

    async def _expire(self, session: Session) -> None:
        if session.closed or session.live is not None:
            return
        self.expired += 1
        await self._finish(session)

    def replaced(self, link: Link) -> None:
        """A newer login of ``link``'s player took over: a held session ends now.

        Its seats must not wait for the window while the player plays elsewhere;
        a live one ends when the game's replaced hook closed its connection.
        """
        session = link.resume
        if session is not None and session.link is link and session.live is None:
            if not session.closed:
                session.closed = True
                self._end(session)

    def _end(self, session: Session) -> None:
        """The identity cannot be held any more: finalize it on its worker."""
        self.server.post(lambda: self._finish(session), session.link)

    async def _finish(self, session: Session) -> None:
        session.closed = True
        link = session.link
        link.resume = None
        link.state = LinkState.CLOSED
        if session.timer is not None:
            session.timer.cancel()
        self._forget(session)
        await self.server.finalize(link)

    def _forget(self, session: Session) -> None:
        if self.sessions.get(session.account) is session:
            del self.sessions[session.account]

    async def close_all(self) -> None:
        """Graceful stop: every held player leaves now."""
        for session in list(self.sessions.values()):
            if session.live is None and not session.closed:
                await self._finish(session)

    # -- resuming ------------------------------------------------------------

    def carrying(self, link: Link) -> bool:
        """``link`` carries a resumed player (held here, or relayed to its holder)."""
        return link.resume is not None or self.relay.relaying(link)

    async def resume(self, link: Link, token: str, last_seq: int) -> None:
        """``ResumeReq`` on ``link`` (the context's link: a carrier's identity when resumed)."""
        if not token:  # arm, or ask where the count stands
            session = self.arm(link)
            carrier = session.live or link
            self._reply(
                carrier, ResumeResp(recovered=True, token=session.token, seq=session.ring.seq)
            )
            return
        claim = self.keeper.verify(token)
        if claim is None:
            raise HandlerError(RESUME_TOKEN_INVALID, "this is not a resume token of this server")
        bound = self.server.player_of(link)
        if bound is not None and bound.key != claim.account:
            raise HandlerError(RESUME_WRONG_ACCOUNT, "the token is another account's")
        if (
            bound is None
            and claim.account not in self.sessions
            and not self.server.cluster.is_local
        ):  # held on another node, if anywhere: relayed there (see .relay)
            await self.relay.begin(link, claim.account, token, last_seq)
            return
        session = self.check(claim.account, claim.epoch, token)
        if link.resume is session:
            raise HandlerError(RESUME_TOKEN_USED, "this resume token was spent")
        self.adopt(session, link, last_seq)

    def check(self, account: str, epoch: int, token: str) -> Session:
        """The session a verified ``token`` resumes here, or the HandlerError that refuses it.

        The same checks whether the connection is here or relayed from another node.
        """
        session = self.sessions.get(account)
        if session is None or session.closed or session.epoch != epoch:
            raise HandlerError(RESUME_EXPIRED, "no session to resume: log in again")
        if session.token != token:
            raise HandlerError(RESUME_TOKEN_USED, "this resume token was spent")
        if self.server.player_of(session.link) is None or self.server.draining:
            raise HandlerError(RESUME_EXPIRED, "no session to resume: log in again")
        return session

    def adopt(self, session: Session, link: Link, last_seq: int) -> None:
        """Make ``link`` the carrier of ``session``: ResumeResp, the replay, then what follows."""
        old = session.live
        if old is not None:  # what it queued but never wrote is numbered, then resent
            old._number_out()
            old.out.clear()
            old.out_bytes = 0
        session.live = None
        if old is not None:
            self._kick(session, old)
        identity = session.link
        identity.state = LinkState.OPEN
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        link.resume = session
        link._ctx = identity.ctx
        session.token = self.keeper.issue(session.account, session.epoch)
        ring = session.ring
        frames = ring.after(last_seq)
        if frames is None:
            self.unrecovered += 1
            self._reply(link, ResumeResp(recovered=False, token=session.token, seq=ring.seq))
        else:
            self.resumed += 1
            self._reply(
                link,
                ResumeResp(recovered=True, token=session.token, seq=last_seq, replayed=len(frames)),
            )
            for frame in frames:
                link.write_untracked(frame)
        session.live = link  # from here on, what is sent to the player goes to ``link``
        server = self.server
        if session.dropped:
            session.dropped = False
            server.post(lambda: self._run("resume", identity), identity)
        if frames is None:
            server.post(lambda: self._run("snapshot", identity), identity)

    def _kick(self, session: Session, old: Link) -> None:
        """A half-open connection of the player loses to the one that resumed."""
        if isinstance(old, RelayedLink):  # its node answers Error(replaced) and closes
            old.resume = None
            old.transport.kick(f"{session.account} resumed elsewhere")
            return
        frame = self.server.outcomes.error_frame("replaced", f"{session.account} resumed elsewhere")
        if old is session.link:  # the identity's own connection: end it, keep the link
            if old.transport is not None and not old.transport.is_closing():
                old.transport.write(frame)
                old.transport.close()
            self.server.links.pop(old.id, None)
        else:
            old.resume = None
            old.write_untracked(frame)
            old.close(CloseReason.REPLACED)

    def _reply(self, link: Link, msg: ResumeResp) -> None:
        link.write_untracked(self.server.codec.encode_frame(msg))


def secret_of(resume_secret: str, cluster_url: str) -> str:
    """The token key: ``resume_secret``, else one every node of the cluster derives alike.

    Derived from ``cluster_url`` (which every node has and which already grants
    the broker), so a token of one node verifies on another, which relays the
    resume to the node holding the session; alone, random per process.
    """
    if resume_secret:
        return resume_secret
    if cluster_url:
        return hashlib.sha256(b"sgs-resume-token\x00" + cluster_url.encode()).hexdigest()
    return ""


router = Router()


@router.on(ResumeReq)
async def resume(ctx: Context, msg: ResumeReq) -> None:
    """Resume a dropped player on this link, or arm resumption (empty token)."""
    resumer: Resumer = ctx.server.resumer
    if not resumer.enabled:
        raise HandlerError("resume_off", "session resumption is off (resume_window = 0)")
    await resumer.resume(ctx.link, msg.token, msg.last_seq)
