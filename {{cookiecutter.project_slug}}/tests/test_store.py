"""The player-state store: every backend on real storage, failures made for real.

memory, a SQLite file in tmp_path and a real redis-server (the ``redis_server``
fixture) run the same contract and PlayerStore tests. Failures are real too:

- SQLite "made unwritable" mid-run: a second connection holds ``BEGIN
  EXCLUSIVE``. Tests run as root in containers, where chmod and read-only
  folders stop nothing, and a full disk needs a mount; a lock held by another
  connection makes every write of ours fail with SQLITE_BUSY for anyone, root
  included, and releasing it is "the disk came back".
- Redis: SIGSTOP (a hung broker: sockets open, no answer) and SIGKILL + restart
  (a lost broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from redis_server import RedisServer
from testkit import until

from {{ cookiecutter.package_name }}.sgs.settings import (
    ServerSettings,
)
from {{ cookiecutter.package_name }}.sgs.store import (
    Backend,
    FencedError,
    MemoryBackend,
    PlayerState,
    PlayerStore,
    Row,
    StoreConfigError,
    StoreUnavailable,
    make_store,
)
from {{ cookiecutter.package_name }}.sgs.store.redis import (
    RedisBackend,
)
from {{ cookiecutter.package_name }}.sgs.store.sqlite import (
    SCHEMA_VERSION,
    SqliteBackend,
)

WAIT = 10.0  # every wait in this file is bounded by this many seconds
LONG = 3600.0  # a flush interval that never fires during a test

BackendFactory = Callable[[], Backend]


def new_store(
    backend: Backend, *, interval: float = LONG, sync: str = "write_behind", max_dirty: int = 1000
) -> PlayerStore:
    return PlayerStore(backend, flush_interval=interval, sync=sync, max_dirty=max_dirty)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    """Makes backends that share one storage, as two nodes (or two runs) would."""
    if request.param == "memory":
        shared = MemoryBackend()
        return lambda: shared
    if request.param == "sqlite":
        path = tmp_path / "state" / "players.db"
        return lambda: SqliteBackend(path, busy_timeout=1.0)
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: RedisBackend(server.url, prefix="t", timeout=1.0)


# -- PlayerState ---------------------------------------------------------------


def test_state_marks_every_change() -> None:
    dirty: set[str] = set()  # the owning store's set of keys to flush
    state = PlayerState("ann", 1, {"counter": 0}, dirty)
    assert not state.dirty and not dirty
    state["counter"] += 1
    assert dirty == {"ann"} and state.get("counter") == 1 and "counter" in state
    dirty.clear()
    del state["counter"]
    assert dirty == {"ann"} and state.get("counter") is None and "counter" not in state
    dirty.clear()
    state.setdefault("bag", []).append("sword")
    assert dirty == {"ann"}
    dirty.clear()
    state["bag"].append("shield")  # nested change: invisible ...
    assert not dirty
    state.touch()  # ... until touched
    assert dirty == {"ann"}
    assert state.dirty and dict(state) == {"bag": ["sword", "shield"]} and len(state) == 1


# -- the backend contract, on every backend ----------------------------------------


async def test_backend_contract(backends: BackendFactory) -> None:
    e = 1_700_000_000_000_000  # epochs are microsecond times: 16 digits, below 2**53
    backend = backends()
    await backend.open()
    try:
        assert await backend.claim("ann", e + 10) is None  # a new player
        assert await backend.get("ann") is None  # claimed, but nothing stored yet
        assert await backend.write([("ann", {"counter": 3, "name": "Ann é"}, e + 10)]) == []
        assert await backend.get("ann") == ({"counter": 3, "name": "Ann é"}, e + 10)
        assert await backend.claim("ann", e + 11) == {"counter": 3, "name": "Ann é"}
        with pytest.raises(FencedError) as caught:
            await backend.claim("ann", e + 10)  # an older login cannot take it back
        assert caught.value.stored_epoch == e + 11
        # One batch: the stale row is refused, the others are written.
        fenced = await backend.write([("ann", {"counter": 99}, e + 10), ("bob", {"counter": 1}, 5)])
        assert fenced == ["ann"]
        assert await backend.get("ann") == ({"counter": 3, "name": "Ann é"}, e + 11)
        # Two logins of one key at once: the older one is fenced, whatever the order of
        # arrival (SQLite answers both from one transaction).
        both = await asyncio.gather(
            backend.claim("dan", e + 5), backend.claim("dan", e + 3), return_exceptions=True
        )
        assert both[0] is None and isinstance(both[1], FencedError)
        await backend.put("cid", {"imported": True}, 2**53 - 1)
        rows = sorted([row async for row in backend.items()])
        assert rows == [
            ("ann", {"counter": 3, "name": "Ann é"}, e + 11),
            ("bob", {"counter": 1}, 5),
            ("cid", {"imported": True}, 2**53 - 1),
        ]
    finally:
        await backend.close()


# -- PlayerStore on every backend ------------------------------------------------


async def test_write_behind_flushes_in_one_batch(backends: BackendFactory) -> None:
    store = new_store(backends(), interval=0.2)
    await store.start()
    try:
        states = [await store.load(f"p{i}", 1) for i in range(20)]
        for _ in range(5):  # 100 changes, 20 players: one flush writes each once
            for state in states:
                state["counter"] = state.get("counter", 0) + 1
        assert store.stats.dirty == 20
        await until(lambda: store.stats.dirty == 0, WAIT, "the write-behind flush")
        assert store.stats.flushes == 1 and store.stats.keys_flushed == 20
        assert store.stats.max_batch == 20 and store.stats.failures == 0
        assert await store.backend.get("p7") == ({"counter": 5}, 1)
    finally:
        assert await store.stop(timeout=5.0)


async def test_state_survives_a_graceful_stop(backends: BackendFactory) -> None:
    store = new_store(backends())  # the interval never fires: stop() must flush
    await store.start()
    state = await store.load("ann", 100)
    state["counter"] = 7
    assert await store.stop(timeout=5.0)

    again = new_store(backends())
    await again.start()
    try:
        state = await again.load("ann", 200)
        assert dict(state) == {"counter": 7} and state.epoch == 200
    finally:
        await again.stop(timeout=5.0)


async def test_stale_owner_flush_is_fenced(backends: BackendFactory) -> None:
    node_a, node_b = new_store(backends()), new_store(backends())
    await node_a.start()
    await node_b.start()
    try:
        old = await node_a.load("ann", 1)
        old["counter"] = 1
        await node_a.commit()
        old["counter"] = 2  # node A keeps changing it, unaware of the newer login ...
        new = await node_b.load("ann", 2)  # ... that claimed it on node B
        assert new["counter"] == 1
        new["counter"] = 10
        await node_b.commit()
        await node_a.commit()  # the stale owner's flush: refused, dropped, counted
        assert node_a.stats.fenced == 1 and node_a.get("ann") is None and not old.attached
        assert await node_b.backend.get("ann") == ({"counter": 10}, 2)
        with pytest.raises(FencedError):
            await node_a.load("ann", 1)  # and it cannot log the old session back in
    finally:
        await node_a.stop(timeout=5.0)
        await node_b.stop(timeout=5.0)


class LateReclaim(Backend):
    """A real backend whose reclaim answers late: it has run, its reply is still on the way.

    A relogin on the same node claims the player at a newer epoch while a
    flush of the older login's change is in flight: the claim fences that
    write before this node has heard the claim's answer.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.describe = inner.describe
        self.ran = asyncio.Event()
        self.answer = asyncio.Event()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def claim(self, key: str, epoch: int) -> dict[str, Any] | None:
        return await self.inner.claim(key, epoch)

    async def reclaim(
        self, key: str, epoch: int, cached_epoch: int
    ) -> tuple[int, dict[str, Any] | None]:
        result = await self.inner.reclaim(key, epoch, cached_epoch)
        self.ran.set()
        await self.answer.wait()
        return result

    async def write(self, batch: Sequence[Row]) -> list[str]:
        return await self.inner.write(batch)

    async def get(self, key: str) -> tuple[dict[str, Any], int] | None:
        return await self.inner.get(key)

    def items(self) -> AsyncIterator[Row]:
        return self.inner.items()

    async def put(self, key: str, data: dict[str, Any], epoch: int) -> None:
        await self.inner.put(key, data, epoch)


async def test_a_write_fenced_by_a_relogin_here_is_written_again_not_lost(
    backends: BackendFactory,
) -> None:
    backend = LateReclaim(backends())
    store = new_store(backend, sync="always")
    await store.start()
    relogin: asyncio.Future[PlayerState] | None = None
    try:
        state = await store.load("ann", 1)
        state["counter"] = 1
        await store.commit()
        relogin = asyncio.ensure_future(store.load("ann", 2, verify=True))
        await asyncio.wait_for(backend.ran.wait(), WAIT)  # the claim at epoch 2 ran
        state["counter"] = 2  # the older link's last request, answered once durable
        commit = asyncio.ensure_future(store.commit())
        await until(lambda: store.stats.flushes == 2, WAIT, "the fenced flush")
        await asyncio.sleep(0.05)
        assert not commit.done(), "acknowledged before the change was durable"
        assert store.get("ann") is state and state.attached, "the change was dropped"

        backend.answer.set()  # the claim's answer arrives: same state, newer epoch
        again = await asyncio.wait_for(relogin, WAIT)
        assert again is state and again.epoch == 2 and again["counter"] == 2
        await asyncio.wait_for(commit, WAIT)
        assert await backend.get("ann") == ({"counter": 2}, 2)
        assert store.stats.fenced == 0 and not state.dirty
    finally:
        backend.answer.set()
        await store.stop(timeout=5.0)
        if relogin is not None:
            with contextlib.suppress(Exception):
                await relogin


async def test_always_mode_commits_concurrent_callers_together(backends: BackendFactory) -> None:
    store = new_store(backends(), sync="always")
    await store.start()
    try:
        states = [await store.load(f"p{i}", 1) for i in range(50)]

        async def request(state: PlayerState) -> None:
            state["counter"] = 1
            await store.commit()  # returns only once this change is durable
            assert await store.backend.get(state.key) == ({"counter": 1}, 1)

        await asyncio.wait_for(asyncio.gather(*(request(s) for s in states)), WAIT)
        assert store.sync_always and store.stats.commits == 50
        assert store.stats.commit_batches <= 2, store.stats  # group commit, not 50 writes
        assert store.stats.max_batch >= 25 and store.stats.dirty == 0
    finally:
        await store.stop(timeout=5.0)


async def test_release_and_hand_off_evict_once_durable(backends: BackendFactory) -> None:
    store = new_store(backends())
    await store.start()
    try:
        clean = await store.load("clean", 1)
        store.release("clean")  # nothing to write: gone at once
        assert store.get("clean") is None and not clean.attached

        left = await store.load("left", 1)
        left["counter"] = 3
        store.release("left")  # flushed soon in the background, not at the interval
        await until(lambda: store.get("left") is None, WAIT, "the released state's flush")
        assert await store.backend.get("left") == ({"counter": 3}, 1)

        moving = await store.load("moving", 1)
        moving["counter"] = 4
        assert await store.hand_off("moving", timeout=5.0)
        assert store.get("moving") is None
        assert await store.backend.get("moving") == ({"counter": 4}, 1)
        assert await store.hand_off("nobody", timeout=1.0)  # not here: nothing to do
    finally:
        await store.stop(timeout=5.0)


async def test_cached_state_wins_and_takes_the_new_epoch() -> None:
    store = new_store(MemoryBackend())
    await store.start()
    try:
        first = await store.load("ann", 5)
        first["counter"] = 1
        store.release("ann")  # the flush has not happened yet (interval never fires)
        again = await store.load("ann", 6)  # replaced login on the same node
        assert again is first and again.epoch == 6 and again["counter"] == 1
        with pytest.raises(FencedError):
            await store.load("ann", 4)
        await store.commit()
        assert store.get("ann") is again  # owned again: not evicted by the flush
        assert await store.backend.get("ann") == ({"counter": 1}, 6)
    finally:
        await store.stop(timeout=5.0)


async def test_concurrent_loads_of_one_key_share_the_state(backends: BackendFactory) -> None:
    store = new_store(backends())
    await store.start()
    try:
        a, b = await asyncio.gather(store.load("ann", 1), store.load("ann", 2))
        assert a is b and a.epoch == 2
    finally:
        await store.stop(timeout=5.0)


async def test_too_many_unflushed_states_refuse_new_logins() -> None:
    store = new_store(MemoryBackend(), max_dirty=2)
    await store.start()
    try:
        for name in ("a", "b", "c"):
            (await store.load(name, 1))["counter"] = 1
        with pytest.raises(StoreUnavailable, match="store_max_dirty"):
            await store.load("d", 1)
        assert (await store.load("a", 2))["counter"] == 1  # in memory already: still served
        assert store.stats.refused == 1
        await store.commit()
        assert (await store.load("d", 1)) == {}
    finally:
        await store.stop(timeout=5.0)


async def test_a_state_that_is_not_json_is_reported_not_fatal(caplog: Any) -> None:
    store = new_store(MemoryBackend())
    await store.start()
    try:
        (await store.load("bad", 1))["things"] = {1, 2}  # a set: not JSON
        (await store.load("good", 1))["counter"] = 1
        await store.commit()
        await store.commit()
        assert await store.backend.get("good") == ({"counter": 1}, 1)
        assert store.stats.invalid == 1 and "not JSON-able" in caplog.text
        assert caplog.text.count("not JSON-able") == 1  # once per key, not per flush
    finally:
        assert not await store.stop(timeout=1.0)  # 'bad' is reported as lost


# -- failures, for real ------------------------------------------------------------


def store_errors(caplog: Any) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sgs.store" and r.levelno >= logging.ERROR]


async def test_sqlite_write_failure_keeps_serving_then_flushes(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "players.db"
    store = new_store(SqliteBackend(path, busy_timeout=0.05), interval=0.05)
    await store.start()
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        state = await store.load("ann", 1)
        locker.execute("BEGIN EXCLUSIVE")  # from now on every write of the store fails
        state["counter"] = 1
        await until(lambda: store.stats.failures >= 3, WAIT, "three failed flush attempts")
        assert not store.healthy and store.get("ann") is state and state.dirty
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.load("bob", 1)  # a new login cannot be claimed: refused clearly
        state["counter"] = 2  # the owner keeps playing in memory
        assert len(store_errors(caplog)) == 1  # logged once per failure streak
        locker.execute("ROLLBACK")  # the disk is back
        await until(lambda: store.stats.dirty == 0, WAIT, "the flush after the lock is gone")
        assert store.healthy
        row = locker.execute("SELECT data, epoch FROM player_state WHERE key = 'ann'").fetchone()
        assert row == ('{"counter":2}', 1)
    finally:
        locker.close()
        await store.stop(timeout=5.0)


async def test_redis_paused_then_resumed(redis_server: RedisServer, caplog: Any) -> None:
    store = new_store(RedisBackend(redis_server.url, prefix="t", timeout=0.3), interval=0.05)
    await store.start()
    try:
        state = await store.load("ann", 1)
        redis_server.pause()  # SIGSTOP: connections stay open, nothing answers
        try:
            state["counter"] = 1
            await until(lambda: store.stats.failures >= 2, WAIT, "failed flushes to a paused Redis")
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(store.load("bob", 1), WAIT)  # bounded by the timeout
            state["counter"] = 2
        finally:
            redis_server.resume()
        await until(lambda: store.stats.dirty == 0, WAIT, "the flush after SIGCONT")
        assert await store.backend.get("ann") == ({"counter": 2}, 1)
        assert len(store_errors(caplog)) == 1
    finally:
        await store.stop(timeout=5.0)


async def test_redis_killed_then_restarted(redis_server: RedisServer) -> None:
    store = new_store(RedisBackend(redis_server.url, prefix="t", timeout=0.3), interval=0.05)
    await store.start()
    try:
        state = await store.load("ann", 1)
        redis_server.kill()
        state["counter"] = 5
        await until(lambda: store.stats.failures >= 2, WAIT, "failed flushes to a dead Redis")
        assert store.get("ann") is state and not store.healthy
        redis_server.start()  # same port, empty (persistence off)
        await until(lambda: store.stats.dirty == 0, WAIT, "the flush after the restart")
        assert await store.backend.get("ann") == ({"counter": 5}, 1)
        assert store.healthy
    finally:
        await store.stop(timeout=5.0)


async def test_write_back_after_a_broker_data_loss_does_not_wait_out_the_backoff(
    redis_server: RedisServer,
) -> None:
    """The cluster saw the broker come back empty: what this node holds is written at once.

    Logins elsewhere wait one lease for the write-backs; a flush that kept
    backing off through the outage (up to MAX_BACKOFF) would come too late.
    """
    store = new_store(RedisBackend(redis_server.url, prefix="t", timeout=0.3), interval=0.05)
    await store.start()
    try:
        state = await store.load("ann", 1)
        redis_server.kill()
        state["counter"] = 5
        # Fail until the retry delay is at its cap, then wait for one more
        # failure: the next retry is MAX_BACKOFF (5 s) away.
        await until(lambda: store.stats.failures >= 7, WAIT, "the backoff to reach its cap")
        failures = store.stats.failures
        await until(lambda: store.stats.failures > failures, WAIT, "one more failed flush")
        redis_server.start()  # same port, empty (persistence off)
        assert store.write_back() == 1
        await until(lambda: store.stats.dirty == 0, 2.5, "the write-back, before the backoff ends")
        assert await store.backend.get("ann") == ({"counter": 5}, 1)
    finally:
        await store.stop(timeout=5.0)


async def test_stop_with_the_store_down_reports_what_is_lost(
    redis_server: RedisServer, caplog: Any
) -> None:
    store = new_store(RedisBackend(redis_server.url, prefix="t", timeout=0.2))
    await store.start()
    (await store.load("ann", 1))["counter"] = 1
    redis_server.kill()
    assert not await asyncio.wait_for(store.stop(timeout=1.0), WAIT)
    assert "could not be flushed" in caplog.text and "'ann'" in caplog.text


# -- schema and configuration ---------------------------------------------------


async def test_sqlite_opens_an_older_schema_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)  # version 1, written by hand: data only, no epochs
    old.execute("CREATE TABLE players (key TEXT PRIMARY KEY, data TEXT NOT NULL)")
    old.execute("""INSERT INTO players VALUES ('ann', '{"counter": 41}')""")
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()

    store = new_store(SqliteBackend(path))
    await store.start()
    try:
        state = await store.load("ann", 7)
        assert dict(state) == {"counter": 41}
        state["counter"] += 1
        await store.commit()
        assert await store.backend.get("ann") == ({"counter": 42}, 7)
    finally:
        await store.stop(timeout=5.0)
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        check.close()


def corrupt(path: Path) -> None:
    path.write_bytes(b"definitely not sqlite " + os.urandom(4096))


def directory(path: Path) -> None:
    path.mkdir()


def newer_schema(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()


@pytest.mark.parametrize(
    ("prepare", "relative", "reason"),
    [
        (directory, "x.db", "is a directory"),
        (lambda p: None, "a-file/x.db", "cannot be made"),  # its folder is a regular file
        (corrupt, "x.db", "is not a SQLite database"),
        (newer_schema, "x.db", "newer than this server's"),
    ],
    ids=["directory", "unwritable-folder", "corrupt", "newer-schema"],
)
async def test_bad_sqlite_file_is_a_clear_config_error(
    tmp_path: Path, prepare: Callable[[Path], None], relative: str, reason: str
) -> None:
    (tmp_path / "a-file").write_text("a file where a folder should be")
    path = tmp_path / relative
    prepare(path)
    url = f"sqlite:///{path}"
    store = make_store(ServerSettings(store_url=url))
    with pytest.raises(StoreConfigError) as caught:
        await store.start()
    message = str(caught.value)
    assert "store_url" in message and str(path) in message and reason in message


async def test_locked_sqlite_file_is_a_clear_config_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)  # rollback journal: a full lock
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = new_store(SqliteBackend(path, url=f"sqlite:///{path}", busy_timeout=0.1))
        with pytest.raises(StoreConfigError, match="locked by another") as caught:
            await store.start()
        assert "store_url" in str(caught.value) and str(path) in str(caught.value)
    finally:
        holder.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any folder; see unwritable-folder")
async def test_read_only_folder_is_a_clear_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        store = make_store(ServerSettings(store_url=f"sqlite:///{folder}/x.db"))
        with pytest.raises(StoreConfigError, match="store_url"):
            await store.start()
    finally:
        folder.chmod(0o700)


async def test_relative_sqlite_path_creates_its_folder(isolated: Path) -> None:
    store = make_store(ServerSettings(store_url="sqlite:///var/game.db"))
    await store.start()
    try:
        (await store.load("ann", 1))["counter"] = 1
    finally:
        assert await store.stop(timeout=5.0)
    assert (isolated / "var" / "game.db").is_file()


async def test_redis_refusing_our_password_is_a_config_error(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(redis_server.url)
    await admin.config_set("requirepass", "right")
    await admin.aclose()
    url = f"redis://:wrong@127.0.0.1:{redis_server.port}/0"
    store = make_store(ServerSettings(store_url=url))
    with pytest.raises(StoreConfigError, match="store_url") as caught:
        await store.start()
    assert "wrong" not in str(caught.value)  # the password is masked


async def test_redis_down_at_start_is_not_fatal_and_heals(redis_server: RedisServer) -> None:
    redis_server.kill()
    store = make_store(ServerSettings(store_url=redis_server.url, cluster_timeout=0.5))
    await store.start()  # a broker outage never stops the server
    try:
        with pytest.raises(StoreUnavailable):
            await store.load("ann", 1)
        assert not store.healthy
        redis_server.start()
        assert await store.load("ann", 1) == {} and store.healthy
    finally:
        await store.stop(timeout=5.0)
