"""The player-state cache in front of a backend: write-behind, group commit, fencing.

One writer per player: the node holding a player's login loads the state once
(``load``, an epoch-fenced claim), handlers change it in memory, and this class
makes the changes durable in batches, off the request path:

- ``write_behind`` (default): a background task writes every dirty state every
  ``flush_interval`` seconds, one transaction per batch, and sooner when an
  owner leaves (``release``) or another node takes the player (``hand_off``).
- ``always``: the framework awaits ``commit()`` before a reply leaves; callers
  that arrive while a batch is being written share the next one (group commit),
  so a busy server pays one transaction per pass, not one per request.

A failed batch (disk full, Redis down) is logged once per failure streak and
retried with backoff; the states stay in memory, bounded by ``max_dirty``
(past it ``load`` refuses new logins instead of losing data silently). A row
the backend fences (a newer login owns the player) is dropped from memory,
unless this node itself is claiming it again for a newer login (a relogin
here while the write was in flight): then the change stays and is written
again under the new epoch, and the commit waiters wait for that write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .backend import Backend, Row, dumps
from .errors import FencedError, StoreConfigError, StoreError, StoreUnavailable
from .state import PlayerState

log = logging.getLogger("sgs.store")

SYNC_MODES = ("write_behind", "always")
FIRST_BACKOFF = 0.1  # seconds before the first retry of a failed batch; doubles per failure
MAX_BACKOFF = 5.0
MAX_ROWS_PER_WRITE = 5000  # one transaction stays short even after a long outage
LOST_KEYS_LOGGED = 10


@dataclass
class StoreStats:
    """Counters for metrics and benchmarks; plain ints, cheap to keep."""

    flushes: int = 0  # transactions written
    keys_flushed: int = 0
    failures: int = 0  # transactions that failed (each retried later)
    fenced: int = 0  # states dropped / logins refused because a newer owner holds them
    stale: int = 0  # cached states found older than the stored one at a login (not used)
    refused: int = 0  # loads refused: backend down or too many unflushed states
    invalid: int = 0  # states found not JSON-able (a bug in game code)
    dirty: int = 0  # states with changes not yet durable (updated on read)
    cached: int = 0  # states in memory (updated on read)
    last_batch: int = 0  # rows in the last transaction
    max_batch: int = 0
    commits: int = 0  # commit() calls that had something to wait for
    commit_batches: int = 0  # transactions some commit() or hand_off() caller waited for

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _settle(fut: asyncio.Future[None] | None, exc: BaseException | None = None) -> None:
    """Resolve a waiters' future; an exception nobody awaits is not logged as lost."""
    if fut is None or fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
        fut.exception()  # mark retrieved: waiters that timed out must not warn at exit


class PlayerStore:
    """Per-player state owned by this node, made durable through ``backend``."""

    def __init__(
        self,
        backend: Backend,
        *,
        flush_interval: float,
        sync: str,
        max_dirty: int,
        retain: float = 0.0,
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"store_sync must be one of {SYNC_MODES}, got {sync!r}")
        if flush_interval <= 0:
            raise ValueError("store_flush_interval must be positive")
        self.backend = backend
        self.flush_interval = flush_interval
        self.sync_always = sync == "always"
        self.max_dirty = max_dirty
        # Seconds an evicted (durable) state is remembered, unowned, so a
        # broker data loss can be repaired by writing it back. 0: not kept.
        self.retain = retain
        self._recent: dict[str, tuple[float, PlayerState]] = {}
        self.healthy = True  # False from a failed backend call until the next success
        self._stats = StoreStats()
        self._states: dict[str, PlayerState] = {}
        self._dirty: set[str] = set()
        self._released: set[str] = set()  # owner left: evict once durable
        self._invalid: set[str] = set()  # not JSON-able; logged once per key
        self._loading: dict[str, asyncio.Future[None]] = {}
        # Keys a login on this node is reclaiming (a count per key): a write of
        # theirs fenced meanwhile was fenced by us, and is not a loss.
        self._claiming: dict[str, int] = {}
        self._waiters: asyncio.Future[None] | None = None  # settled when the next batch ends
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._batch_lock = asyncio.Lock()
        self._streak = 0  # consecutive failed batches
        self._retry_at = 0.0
        self._wake_flag = False
        self._sleep_fut: asyncio.Future[None] | None = None
        self._sleep_wakeable = False
        #: Told ``(key, epoch)`` when the backend fences a write, before the
        #: batch's commit waiters are settled (the bindings drop that player).
        self.on_fenced: Callable[[str, int], None] | None = None

    # -- lifecycle ----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._stopping

    async def start(self) -> None:
        """Open the backend (StoreConfigError if unusable) and start the flush task."""
        if self._task is not None:
            return
        try:
            await self.backend.open()
        except StoreError:
            raise
        except Exception as exc:  # a backend bug must still read as a config problem
            raise StoreConfigError(
                f"store_url: cannot open {self.backend.describe}: {exc}"
            ) from exc
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="sgs-store-flush")

    async def stop(self, timeout: float) -> bool:
        """Flush everything (retrying) within ``timeout``, then close the backend.

        Returns True when every state was made durable; otherwise the lost keys
        are logged (the backend stayed down for the whole ``timeout``).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            self._interrupt(always=True)
            try:  # let a batch in flight finish rather than cancel it half-written
                await asyncio.wait_for(task, max(0.0, deadline - loop.time()))
            except (TimeoutError, asyncio.CancelledError):
                pass
        self._released.update(self._states)
        while self._dirty - self._invalid:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._batch(), remaining)
            except TimeoutError:
                break
            except StoreError:
                await asyncio.sleep(min(self._backoff(), max(0.0, deadline - loop.time())))
        lost = sorted(self._dirty)
        if lost:
            shown = ", ".join(repr(k) for k in lost[:LOST_KEYS_LOGGED])
            more = (
                f" and {len(lost) - LOST_KEYS_LOGGED} more" if len(lost) > LOST_KEYS_LOGGED else ""
            )
            log.error(
                "player store %s: %d player state(s) could not be flushed within %.1fs "
                "and lose their unflushed changes: %s%s",
                self.backend.describe,
                len(lost),
                timeout,
                shown,
                more,
            )
        for state in list(self._states.values()):
            self._drop(state)
        _settle(self._waiters, StoreUnavailable("the player store stopped"))
        self._waiters = None
        try:
            await self.backend.close()
        except Exception as exc:  # closing must never turn a clean stop into a crash
            log.warning("player store %s: close failed: %s", self.backend.describe, exc)
        return not lost

    # -- the owner's API ----------------------------------------------------
    async def load(self, key: str, epoch: int, *, verify: bool = False) -> PlayerState:
        """The state of ``key``, owned from now on at ``epoch``.

        A state still in memory (owned, or released and waiting for its flush)
        is newer than the backend's copy when nobody else owned the player
        since, so it wins and takes the new epoch. With ``verify`` (a cluster,
        where another node may have owned it meanwhile) that is checked: the
        backend claims the key and says whether its stored epoch is newer than
        the cached one; then the cache is stale, dropped, and the stored state
        is used (no resurrection). A stored copy older than the cache (the
        broker lost it) is written back. Otherwise the backend claims the key
        (FencedError if a newer login owns it). StoreUnavailable when the
        backend is down or more than ``max_dirty`` states wait to be flushed.
        """
        while True:
            state = self._states.get(key)
            if state is not None:
                if epoch < state.epoch:
                    self._stats.fenced += 1
                    raise FencedError(key, epoch, state.epoch)
                if verify:
                    fresh = await self._reclaim(state, epoch)
                    if fresh is not None:
                        return fresh
                    if self._states.get(key) is not state:
                        continue  # changed hands while the backend answered
                state.epoch = epoch
                self._released.discard(key)
                return state
            pending = self._loading.get(key)
            if pending is None:
                break
            await asyncio.shield(pending)  # a concurrent login of the same key claims first
        if not self.running:
            raise StoreUnavailable("the player store is not running")
        if len(self._dirty) > self.max_dirty:
            self._stats.refused += 1
            raise StoreUnavailable(
                f"{len(self._dirty)} player states are waiting to be flushed to "
                f"{self.backend.describe} (store_max_dirty = {self.max_dirty}); "
                "new logins are refused until the store catches up"
            )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[key] = done
        try:
            data = await self.backend.claim(key, epoch)
        except FencedError:
            self._stats.fenced += 1
            raise
        except Exception as exc:
            self._stats.refused += 1
            self.healthy = False
            where = "" if isinstance(exc, StoreError) else f" from {self.backend.describe}"
            raise StoreUnavailable(f"cannot load player {key!r}{where}: {exc}") from exc
        finally:
            del self._loading[key]
            done.set_result(None)
        if self._streak == 0:
            self.healthy = True
        state = PlayerState(key, epoch, data, self._dirty)
        self._states[key] = state
        self._recent.pop(key, None)  # owned again: the stored copy is the one to keep
        return state

    async def _reclaim(self, state: PlayerState, epoch: int) -> PlayerState | None:
        """Claim a cached key at ``epoch``; a fresh state when the stored one is newer."""
        key = state.key
        claiming = self._claiming
        claiming[key] = claiming.get(key, 0) + 1
        try:
            stored_epoch, data = await self.backend.reclaim(key, epoch, state.epoch)
        except FencedError:
            self._stats.fenced += 1
            raise
        except Exception as exc:
            self._stats.refused += 1
            raise StoreUnavailable(f"cannot load player {key!r}: {exc}") from exc
        finally:
            left = claiming[key] - 1
            if left:
                claiming[key] = left
            else:
                del claiming[key]
            if self._waiters is not None:  # a rewrite may have waited for this claim
                self._wake()
        if stored_epoch > state.epoch:
            log.warning(
                "player %r: the cached state (epoch %d) is older than the stored one (epoch %d): "
                "another node owned it since; using the stored state",
                key,
                state.epoch,
                stored_epoch,
            )
            self._stats.stale += 1
            self._drop(state)
            fresh = PlayerState(key, epoch, data, self._dirty)
            self._states[key] = fresh
            return fresh
        if stored_epoch < state.epoch:
            state.touch()  # the stored copy is gone or older (the broker lost it): write back
        return None

    def write_back(self) -> int:
        """The broker lost its data: write every state held here again; how many.

        Owned states are marked changed. States handed off within ``retain``
        seconds (their new owner may not have loaded them before the loss)
        come back unowned, to be written and evicted: each write carries the
        epoch it was owned at, so a newer owner's write back wins.
        """
        now = asyncio.get_running_loop().time() if self._recent else 0.0
        for key, (at, old) in list(self._recent.items()):
            if key not in self._states and now - at <= self.retain:
                state = PlayerState(key, old.epoch, old.data, self._dirty)
                self._states[key] = state
                self._released.add(key)
        self._recent.clear()
        for state in self._states.values():
            state.touch()
        if self._states:
            # The broker answers again: a flush backing off from the outage
            # would write these only after its backoff (up to MAX_BACKOFF),
            # while logins elsewhere wait one lease for them. Write them now.
            self._retry_at = 0.0
            self._wake_flag = True
            self._interrupt(always=True)
        return len(self._states)

    def get(self, key: str) -> PlayerState | None:
        """The state of ``key`` if this node holds it in memory."""
        return self._states.get(key)

    def release(self, key: str) -> None:
        """The owner left (logout, disconnect): flush soon, evict once durable."""
        state = self._states.get(key)
        if state is None:
            return
        if not state.dirty:
            self._drop(state, durable=True)
            return
        self._released.add(key)
        self._wake()

    async def hand_off(
        self, key: str, timeout: float, *, before: int | None = None, evict: bool = False
    ) -> bool:
        """Another node is about to load ``key``: flush it now and evict it.

        True when the state is durable (or was not here). False when it could
        not be flushed within ``timeout`` or a newer owner fenced it; the state
        then stays in memory and its flush keeps being retried, unless
        ``evict`` (ownership is lost for sure): then it is dropped anyway.
        ``before``: only a state owned at an older epoch is handed off (a
        stale KICK never evicts a newer local state).
        """
        state = self._states.get(key)
        if state is None:
            return True
        if before is not None and state.epoch >= before:
            return True
        self._released.add(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while state.dirty and self._states.get(key) is state and self.running:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(asyncio.shield(self._next_batch()), remaining)
            except TimeoutError:
                break
            except StoreError:
                continue  # the flush task retries with backoff; wait for that try
        if state.dirty:
            if evict and self._states.get(key) is state and key in self._released:
                self._stats.fenced += 1
                self._drop(state)
            return False
        # Evict only if nobody on this node loaded it again meanwhile (load()
        # takes the key out of _released and keeps using the same object).
        if self._states.get(key) is state and key in self._released:
            self._drop(state, durable=True)
        return True

    @property
    def unsaved(self) -> bool:
        """Some state changed since it was last made durable (a commit would wait)."""
        return bool(self._dirty - self._invalid)

    async def commit(self) -> None:
        """Return once every state dirty at call time is durable (``always`` mode).

        Callers share batches: all who call while a batch is being written wait
        for the next one, which picks up every change made before it starts.
        Raises StoreUnavailable when that batch fails (the changes stay queued).
        """
        if not self.unsaved:
            return
        if not self.running:
            raise StoreUnavailable("the player store is not running")
        self._stats.commits += 1
        await asyncio.shield(self._next_batch())

    @property
    def stats(self) -> StoreStats:
        """The counters, with ``dirty`` and ``cached`` brought up to date."""
        self._stats.dirty = len(self._dirty)
        self._stats.cached = len(self._states)
        return self._stats

    # -- internals ----------------------------------------------------------
    def _drop(self, state: PlayerState, *, durable: bool = False) -> None:
        """Forget ``state``: evicted once durable, or fenced by a newer owner."""
        key = state.key
        if self._states.get(key) is state:
            del self._states[key]
            self._dirty.discard(key)
            self._released.discard(key)
            self._invalid.discard(key)
            if durable and self.retain > 0:
                self._remember(state)
        state.detach()

    def _remember(self, state: PlayerState) -> None:
        """Keep an evicted, durable state for ``retain`` seconds (bounded by max_dirty)."""
        now = asyncio.get_running_loop().time()
        recent = self._recent
        recent.pop(state.key, None)
        recent[state.key] = (now, state)
        while recent:
            key, (at, _) = next(iter(recent.items()))
            if now - at <= self.retain and len(recent) <= self.max_dirty:
                break
            del recent[key]

    def _next_batch(self) -> asyncio.Future[None]:
        if self._waiters is None:
            self._waiters = asyncio.get_running_loop().create_future()
        self._wake()
        return self._waiters

    def _wake(self) -> None:
        self._wake_flag = True
        self._interrupt(always=False)

    def _interrupt(self, *, always: bool) -> None:
        fut = self._sleep_fut
        if fut is not None and not fut.done() and (always or self._sleep_wakeable):
            fut.set_result(None)

    async def _sleep(self, delay: float, *, wakeable: bool) -> None:
        if wakeable and self._wake_flag:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._sleep_fut, self._sleep_wakeable = fut, wakeable
        handle = loop.call_later(delay, _settle, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._sleep_fut = None

    def _backoff(self) -> float:
        return min(FIRST_BACKOFF * 2 ** max(self._streak - 1, 0), MAX_BACKOFF)

    async def _run(self) -> None:
        """The flush task: a batch every interval, on wake-ups, or after a backoff."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if self._streak:  # failing: only the backoff decides, wake-ups wait for it
                await self._sleep(max(0.0, self._retry_at - loop.time()), wakeable=False)
            else:
                await self._sleep(self.flush_interval, wakeable=True)
            if self._stopping:
                return
            self._wake_flag = False
            if not self._dirty and self._waiters is None:
                continue
            try:
                await self._batch()
            except StoreError:
                pass  # logged and counted in _failed; retried after the backoff
            except Exception:  # a bug here must not end durability for the process
                log.exception("player store %s: unexpected flush error", self.backend.describe)

    async def _batch(self) -> None:
        """Write every dirty state once; settle the commit waiters of this batch."""
        async with self._batch_lock:
            waiters, self._waiters = self._waiters, None
            if waiters is not None:
                self._stats.commit_batches += 1
            try:
                again = await self._write_dirty()
            except BaseException as exc:
                error = exc if isinstance(exc, StoreError) else StoreUnavailable(str(exc))
                _settle(waiters, error)
                raise
            if again:
                self._carry(waiters)
            else:
                _settle(waiters)

    def _carry(self, waiters: asyncio.Future[None] | None) -> None:
        """Rows this node re-claimed were not written: their waiters wait for the rewrite.

        The next batch writes them under the new epoch once the claim is
        answered (its end wakes the flush task); until then a batch would only
        be fenced again, so none is started for them. Without waiters (write-
        behind) the rows just stay dirty for the next flush.
        """
        if waiters is None:
            return
        if self._waiters is None:
            self._waiters = waiters  # the next batch settles them
        else:

            def relay(done: asyncio.Future[None]) -> None:
                if done.cancelled():
                    _settle(waiters, StoreUnavailable("the player store stopped"))
                else:
                    _settle(waiters, done.exception())

            self._waiters.add_done_callback(relay)
        if not self._claiming:
            self._wake()

    def _snapshot(self) -> tuple[list[Row], list[tuple[PlayerState, int, int]]]:
        """Copies of the dirty states, taken on the loop so handlers cannot race the write."""
        rows: list[Row] = []
        taken: list[tuple[PlayerState, int, int]] = []
        for key in list(self._dirty):
            state = self._states.get(key)
            if state is None or not state.dirty:
                self._dirty.discard(key)
                continue
            try:
                data: dict[str, Any] = json.loads(dumps(state.data))
            except (TypeError, ValueError) as exc:
                if key not in self._invalid:
                    self._invalid.add(key)
                    self._stats.invalid += 1
                    log.error("player %r: state is not JSON-able, not flushed: %s", key, exc)
                continue
            self._invalid.discard(key)
            rows.append((key, data, state.epoch))
            taken.append((state, state.version, state.epoch))
        return rows, taken

    async def _write_dirty(self) -> bool:
        """Write the dirty states; True when some must be written again (re-claimed here)."""
        rows, taken = self._snapshot()
        again = False
        for start in range(0, len(rows), MAX_ROWS_PER_WRITE):
            chunk = rows[start : start + MAX_ROWS_PER_WRITE]
            try:
                fenced = set(await self.backend.write(chunk))
            except Exception as exc:
                self._failed(exc, len(chunk))
                if isinstance(exc, StoreUnavailable):
                    raise
                raise StoreUnavailable(
                    f"flush of {len(chunk)} player states to {self.backend.describe} failed: {exc}"
                ) from exc
            self._succeeded(len(chunk))
            if self._settle_rows(taken[start : start + MAX_ROWS_PER_WRITE], fenced):
                again = True
        return again

    def _settle_rows(self, taken: Sequence[tuple[PlayerState, int, int]], fenced: set[str]) -> bool:
        """Record what a write made durable; True when a fenced row is ours to write again."""
        again = False
        for state, version, epoch in taken:
            key = state.key
            current = self._states.get(key) is state
            if key in fenced:
                if not current:
                    continue  # dropped meanwhile; its link learns it from the state (lost)
                if state.epoch != epoch or key in self._claiming:
                    # A login on this node claimed the player at a newer epoch
                    # after this row was taken (its claim fenced this write):
                    # the same state goes on under that epoch, change included.
                    again = True
                else:
                    self._stats.fenced += 1
                    log.warning(
                        "player %r: a newer owner holds the state (our epoch %d); dropping "
                        "this node's unflushed changes",
                        state.key,
                        epoch,
                    )
                    self._drop(state)
                    if self.on_fenced is not None:
                        self.on_fenced(key, epoch)
                continue
            state.stored(version)
            if current and not state.dirty:
                self._dirty.discard(key)
                if key in self._released:
                    self._drop(state, durable=True)
        return again

    def _failed(self, exc: BaseException, rows: int) -> None:
        self._stats.failures += 1
        self._streak += 1
        self.healthy = False
        self._retry_at = asyncio.get_running_loop().time() + self._backoff()
        if self._streak == 1:
            log.error(
                "player store %s: flush of %d state(s) failed, keeping them in memory and "
                "retrying with backoff: %s",
                self.backend.describe,
                rows,
                exc,
            )
        else:
            log.debug(
                "player store %s: flush retry %d failed: %s",
                self.backend.describe,
                self._streak,
                exc,
            )

    def _succeeded(self, rows: int) -> None:
        if self._streak:
            log.warning(
                "player store %s: flushing again after %d failed attempt(s)",
                self.backend.describe,
                self._streak,
            )
        self._streak = 0
        self.healthy = True
        self._stats.flushes += 1
        self._stats.keys_flushed += rows
        self._stats.last_batch = rows
        self._stats.max_batch = max(self._stats.max_batch, rows)
