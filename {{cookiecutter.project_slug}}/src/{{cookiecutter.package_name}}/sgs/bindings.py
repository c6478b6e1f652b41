"""Key bindings: one link per key (an account) in the whole cluster, and its state.

``await server.bind(link, key)`` makes ``link`` the one holder of ``key``
wherever the older holder is: on this node the older link is replaced at
once; on another node that node is asked to let go (its ``on_replaced``
hooks run, it flushes the player's state and answers), and the new node
loads the state only after that, so the player carries on where they were.
Every binding takes a fencing epoch from the cluster; the player state store
refuses writes from an owner whose epoch is older than the newest, so a node
that was cut off can never overwrite a newer owner's state.

A link's binding ends when it logs out (``server.unbind(link)``) or closes:
the state is flushed, then the binding is dropped in the cluster, in that
order, so a login elsewhere right after a disconnect waits for (or finds)
the flushed state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .cluster.base import BindRefused, BindResult
from .errors import HandlerError
from .outcomes import CloseReason
from .store import FencedError

if TYPE_CHECKING:
    from .framework import Server
    from .link import Link
    from .message import Message
    from .store import PlayerState

log = logging.getLogger("sgs.bindings")

#: ``async def hook(link, key)``: the game's answer to a replaced login.
ReplacedHook = Callable[["Link", str], Awaitable[None] | None]


@dataclasses.dataclass(slots=True)
class Player:
    """A bound key on this node: who holds it, under which epoch, and its state."""

    key: str
    epoch: int
    link: Link
    state: PlayerState
    told: bool = False  # its link was given the replaced answer


class Bindings:
    """This node's bindings; the cluster and the store do the cross-node part."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.players: dict[str, Player] = {}
        self._by_link: dict[int, str] = {}
        self._hooks: list[ReplacedHook] = []
        # Keys with a bind in flight, and the newest epoch another node claimed
        # for them meanwhile: a bind that finishes after a newer one lost.
        self._pending: dict[str, int] = {}
        self._revoked: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Keys whose holder on another node a login here is asking to let go
        # (KICK in flight): the hand-over's outcome, and what that bind replaced.
        self._handovers: dict[str, tuple[asyncio.Future[bool], BindResult]] = {}

    def on_replaced(self, hook: ReplacedHook) -> ReplacedHook:
        self._hooks.append(hook)
        return hook

    # -- binding ---------------------------------------------------------

    def player_of(self, link: Link) -> Player | None:
        key = self._by_link.get(link.id)
        player = self.players.get(key) if key is not None else None
        # The key may have moved to a newer link since: that one is not ours.
        return player if player is not None and player.link is link else None

    async def bind(self, link: Link, key: str) -> Player:
        """Make ``link`` the holder of ``key`` cluster-wide and load its state.

        Raises ``HandlerError("replaced")`` when a newer login of the same key
        won while this one was in flight (the link is then closed after the
        reply), and ``HandlerError("store_unavailable")`` when the state cannot
        be loaded (the binding is dropped again).
        """
        current = self.players.get(key)
        if current is not None and current.link is link:
            return current
        server = self.server
        cluster = server.cluster
        self._pending[key] = self._pending.get(key, 0) + 1
        try:
            try:
                result = await cluster.bind(key, link)
            except BindRefused as exc:
                if self._pending[key] > 1:
                    # Its BIND may still run after those of the other logins of
                    # this key in flight here, and its queued unbind then leaves
                    # the key unbound: none of them may go on as an owner.
                    self._revoked[key] = sys.maxsize
                log.warning(
                    "login of %r refused: the cluster broker did not confirm it: %s", key, exc
                )
                raise HandlerError(
                    "cluster_unavailable", "the cluster cannot confirm this login now; try again"
                ) from exc
            epoch = result.epoch
            if self._pending[key] > 1:
                # Another login of this key is in flight here. Redis now binds
                # whichever BIND ran last; an older one in flight has lost, even
                # if this login fails later (its unbind then leaves the key
                # unbound, and a login elsewhere would not kick the older one).
                self._revoked[key] = max(self._revoked.get(key, 0), epoch)
            older = self.players.get(key)
            if older is not None and older.epoch < epoch and older.link is not link:
                await self._replace(older)
            # Not elif: the key may have moved here, there and back while this
            # bind was in flight, so an older local link and a holder on
            # another node can both exist; both must let go.
            if result.previous_node == cluster.node_id and key in self._handovers:
                await self._await_handover(key, link, epoch)
            elif result.previous_node not in (None, cluster.node_id) and result.previous_alive:
                cluster.stats.kicks += 1
                timeout = server.settings.cluster_lease
                if not await self._kick(key, epoch, result, timeout):
                    # Its node is alive (its lease holds) but did not answer: it may
                    # be paused with changes not yet flushed. Loading the stored
                    # state now would drop them, so this login is refused.
                    log.warning(
                        "%s: node %s did not hand %r over within %.1fs; login refused",
                        cluster.node_id,
                        result.previous_node,
                        key,
                        timeout,
                    )
                    # The account goes back to that node (it still owns it, and
                    # a retry kicks it again) unless it lost it meanwhile.
                    cluster.give_back(key, link, result)
                    raise HandlerError(
                        "cluster_unavailable",
                        f"{key} is still held by another node; try again in a moment",
                    )
            if self._lost(key, epoch, link):
                raise self._lose(key, link, epoch)
            try:
                # On a cluster a cached state is checked against the stored
                # epoch: another node may have owned the player since.
                state = await server.store.load(key, epoch, verify=not cluster.is_local)
            except FencedError:
                # A newer login already claimed the player's state: this one lost.
                raise self._lose(key, link, epoch) from None
            except Exception as exc:
                cached = server.store.get(key)
                if cached is not None:
                    # This node still holds the key's state (an older login's,
                    # replaced above), perhaps with changes not yet flushed: as
                    # at a logout, it is flushed before the key is free, or a
                    # login elsewhere would load an older copy and fence it.
                    self._spawn(self._release(Player(key, epoch, link, cached)))
                else:
                    cluster.unbind(key, link, epoch)
                log.warning("cannot load the state of %r: %s", key, exc)
                raise HandlerError(
                    "store_unavailable", "player state cannot be loaded now; try again"
                ) from exc
            if self._lost(key, epoch, link):
                raise self._lose(key, link, epoch)
            player = Player(key, epoch, link, state)
            older = self.players.get(key)
            self.players[key] = player
            self._by_link[link.id] = key
            if older is not None and older.link is not link:
                # An older bind of the same key finished while this one loaded.
                await self._replace(older)
            return player
        finally:
            left = self._pending[key] - 1
            if left:
                self._pending[key] = left
            else:
                del self._pending[key]
                self._revoked.pop(key, None)

    async def _kick(self, key: str, epoch: int, result: BindResult, timeout: float) -> bool:
        """Ask the holder on another node to let go; later logins here wait for it too."""
        assert result.previous_node is not None
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._handovers[key] = (done, result)
        ok = False
        try:
            ok = await self.server.cluster.kick(key, epoch, result.previous_node, timeout)
            return ok
        finally:
            done.set_result(ok)
            entry = self._handovers.get(key)
            if entry is not None and entry[0] is done:
                del self._handovers[key]

    async def _await_handover(self, key: str, link: Link, epoch: int) -> None:
        """This bind replaced another login of ``key`` here whose KICK is in flight.

        That login displaced the holder on another node, and only it asked
        that holder to flush and let go: loading before the answer would read
        a state that may miss the holder's last changes (and fence them). So
        this login waits for the same answer; without one it is refused as
        that login is, and the key goes back to the holder.
        """
        done, first = self._handovers[key]
        if await asyncio.shield(done):
            return
        self.server.cluster.give_back(key, link, dataclasses.replace(first, epoch=epoch))
        raise HandlerError(
            "cluster_unavailable", f"{key} is still held by another node; try again in a moment"
        )

    def _lose(self, key: str, link: Link, epoch: int) -> HandlerError:
        """This bind lost to a newer login: drop it, close the link after the answer."""
        self.server.cluster.unbind(key, link, epoch)
        link.close_after_handler(CloseReason.REPLACED)
        return HandlerError("replaced", f"{key} logged in elsewhere")

    def _lost(self, key: str, epoch: int, link: Link) -> bool:
        """A newer binding of ``key`` (here or on another node) exists, or the link went."""
        if link.is_closed:
            return True
        newer = self.players.get(key)
        if newer is not None and newer.link is not link and newer.epoch > epoch:
            return True
        return self._revoked.get(key, 0) > epoch

    async def _replace(self, player: Player) -> None:
        """The older local link of a key lost it: forget it, then let the game answer."""
        self._drop(player)
        await self.tell_replaced(player)

    async def _run_hooks(self, link: Link, key: str) -> None:
        self.server.resumer.replaced(link)  # a held player that logged in again is gone
        if not self._hooks:
            link.close(CloseReason.REPLACED)
            return
        for hook in self._hooks:
            try:
                result = hook(link, key)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("replaced hook %r raised", hook)

    def _drop(self, player: Player) -> None:
        if self.players.get(player.key) is player:
            del self.players[player.key]
        if self._by_link.get(player.link.id) == player.key:
            del self._by_link[player.link.id]

    # -- unbinding -------------------------------------------------------

    def unbind(self, link: Link) -> Player | None:
        """End ``link``'s binding (logout): flush its state, then free the key."""
        player = self.player_of(link)
        if player is None:
            return None
        self._drop(player)
        self._spawn(self._release(player))
        return player

    def link_closed(self, link: Link) -> None:
        """Called by the framework when a link is finalized."""
        self.unbind(link)

    async def _release(self, player: Player) -> None:
        server = self.server
        if server.cluster.is_local:
            server.store.release(player.key)
            return
        await server.store.hand_off(player.key, server.settings.cluster_lease)
        if player.key not in self.players:  # not logged in here again meanwhile
            server.cluster.unbind(player.key, player.link, player.epoch)

    # -- what the cluster calls ------------------------------------------

    async def release_for(self, key: str, epoch: int) -> None:
        """Another node bound ``key`` under ``epoch``: let go of it and flush its state.

        A stale KICK (``epoch`` older than the binding held here) changes
        nothing: the newer local state is neither dropped nor evicted.
        """
        if key in self._pending:
            self._revoked[key] = max(self._revoked.get(key, 0), epoch)
        player = self.players.get(key)
        if player is not None and player.epoch >= epoch:
            return
        if player is not None:
            self._drop(player)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            async def replaced() -> None:
                try:
                    await self.tell_replaced(player)
                finally:
                    if not done.done():
                        done.set_result(None)

            self.server.post(replaced, player.link)
            try:
                await asyncio.wait_for(done, self.server.settings.cluster_lease)
            except TimeoutError:
                log.warning("replaced hooks for %r did not finish in time", key)
        await self.server.store.hand_off(key, self.server.settings.cluster_lease, before=epoch)

    def lost(self, key: str, epoch: int) -> None:
        """The broker says ``key`` (held here at ``epoch``) belongs to a newer login now.

        Its link is answered ``Error(replaced)`` and closed at once; its state
        is flushed if it still can be (the fence refuses it once the newer
        owner claimed) and evicted, so no later login here reads it.
        """
        player = self.players.get(key)
        if player is None or player.epoch != epoch:
            return
        self._drop(player)
        self._tell_replaced(player)
        if key not in self._pending:
            self._spawn(
                self.server.store.hand_off(key, self.server.settings.cluster_timeout, evict=True)
            )

    def fenced(self, key: str, epoch: int) -> None:
        """The store refused a write of ``key`` at ``epoch``: a newer owner holds it.

        Called by the store before it settles the commit waiters: the link is
        told ``replaced``. With ``store_sync = "always"`` the replies that
        waited for that write are dropped by :meth:`refuse_held` once the
        commit is done (the state is lost), never sent as successes.
        """
        player = self.players.get(key)
        if player is None or player.epoch != epoch:
            return
        self._drop(player)
        self._tell_replaced(player)

    def refuse_held(self, player: Player) -> None:
        """The changes ``player``'s held replies acknowledge were fenced: drop the replies.

        ``store_sync = "always"``: the dispatcher calls this once the commit
        is done and the state turned out lost. The link may have been told
        ``replaced`` already (a newer login here) while its replies waited:
        that notice was queued behind them and goes again on its own.
        """
        self._drop(player)
        link = player.link
        told = player.told
        link.out.clear()
        link.out_bytes = 0
        log.warning(
            "%r: changes acknowledged on link %d were fenced by a newer owner; "
            "their replies are dropped",
            player.key,
            link.id,
        )
        if not told:
            self._tell_replaced(player)  # the game's hooks, on the link's own worker
        else:  # its notice was queued behind those replies and went with them: again
            self.server.outcomes.error(
                link, "replaced", f"{player.key} logged in elsewhere", close=CloseReason.REPLACED
            )

    def _tell_replaced(self, player: Player) -> None:
        self.server.post(lambda: self.tell_replaced(player), player.link)

    async def tell_replaced(self, player: Player) -> None:
        """Give ``player``'s link the replaced answer (the game's hooks), once."""
        if player.told:
            return
        player.told = True
        await self._run_hooks(player.link, player.key)

    # -- pushes ----------------------------------------------------------

    async def push_to(self, key: str, msg: Message) -> bool:
        """Send ``msg`` to the link bound to ``key``, on whichever node it is.

        True when it was queued here or handed to the broker for the owning
        node; False when nobody holds the key (or the broker cannot say).
        """
        player = self.players.get(key)
        server = self.server
        if player is not None:
            return player.link.send(msg)
        cluster = server.cluster
        if cluster.is_local:
            return False
        node = await cluster.locate(key)
        if node is None or node == cluster.node_id:
            return False
        return cluster.send_to(node, key, server.codec.encode_frame(msg))

    def deliver(self, key: str, frame: bytes) -> bool:
        """A push for ``key`` arrived from another node."""
        player = self.players.get(key)
        return player is not None and player.link.write_frame(frame)

    # -- housekeeping ----------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("binding release failed", exc_info=task.exception())

    async def settle(self, timeout: float) -> None:
        """Wait for the releases in flight (graceful stop)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
