"""``sqlite:///path``: the embedded default, stdlib ``sqlite3`` in WAL mode.

Every call runs on ONE dedicated thread that owns the only connection: the
event loop never blocks on disk, sqlite3's same-thread rule holds, and the
writes of one process are serialised without a lock of our own. WAL lets the
ops command (``state export``) read while the server writes.

The schema is versioned with ``PRAGMA user_version`` and walked forward by
``MIGRATIONS`` at open, inside the same write transaction that proves the file
is usable: a file that is a folder, corrupt, locked or read-only fails there,
at start-up, with a message naming ``store_url`` and the path.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .backend import Backend, Row, dumps, loads
from .errors import FencedError, StoreConfigError, StoreUnavailable

log = logging.getLogger("sgs.store")

T = TypeVar("T")

# Version N's statements turn a version N-1 database into version N; a new file
# walks every step, so the upgrade path is the path every test takes.
# 1: the first layout, data only.  2: epochs for fencing (table rebuilt: data
# becomes nullable, since a claim records the owner before any data exists).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("CREATE TABLE players (key TEXT PRIMARY KEY, data TEXT NOT NULL)",),
    2: (
        "CREATE TABLE player_state ("
        " key TEXT PRIMARY KEY,"
        " data TEXT,"
        " epoch INTEGER NOT NULL DEFAULT 0,"
        " updated_at REAL NOT NULL DEFAULT 0"
        ") WITHOUT ROWID",
        "INSERT INTO player_state (key, data, epoch, updated_at) "
        "SELECT key, data, 0, 0 FROM players",
        "DROP TABLE players",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

_UPSERT = (
    "INSERT INTO player_state (key, data, epoch, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET data = excluded.data, epoch = excluded.epoch, "
    "updated_at = excluded.updated_at"
)
_FENCED_UPSERT = _UPSERT + " WHERE player_state.epoch <= excluded.epoch"
_PAGE = 500

# sqlite's own words -> what the operator should check.
_REASONS = {
    "file is not a database": "is not a SQLite database (corrupt, or some other file)",
    "database is locked": "is locked by another process or connection",
    "unable to open database file": "cannot be opened (missing or unwritable folder?)",
    "attempt to write a readonly database": "is read-only",
    "database disk image is malformed": "is corrupt (malformed database image)",
}


class SqliteBackend(Backend):
    """One SQLite file, one connection, one thread."""

    def __init__(
        self,
        path: str | Path,
        *,
        url: str | None = None,
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.url = url or f"sqlite:///{path}"
        self.synchronous = synchronous  # NORMAL survives process crashes; FULL power cuts
        self.busy_timeout = busy_timeout
        self.create = create  # False for read-only ops commands: a missing file is an error
        self.describe = f"sqlite {str(self.path)!r}"
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._claims: list[tuple[str, int, asyncio.Future[dict[str, Any] | None]]] = []
        self._claimer: asyncio.Task[None] | None = None

    # -- plumbing -----------------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreUnavailable(f"{self.describe} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"{self.describe}: {exc}") from exc

    def _config_error(self, reason: str) -> StoreConfigError:
        where = str(self.path)
        if not self.path.is_absolute():
            where += f" (resolved: {self.path.resolve()})"
        return StoreConfigError(f"store_url {self.url!r}: the database file {where} {reason}")

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "SqliteBackend used before open()"
        return self._conn

    # -- lifecycle ----------------------------------------------------------
    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sgs-store-sqlite")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open_sync)
        except BaseException:
            await self.close()
            raise

    def _open_sync(self) -> None:
        if self.path.is_dir():
            raise self._config_error("is a directory, not a database file")
        if not self.path.exists():
            if not self.create:
                raise self._config_error("does not exist (no state stored yet?)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._config_error(
                    f"cannot be created: its folder {str(self.path.parent)!r} cannot be made "
                    f"({exc.strerror or exc})"
                ) from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: journal_mode is %s, not WAL", self.describe, mode)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self._migrate(conn)
        except StoreConfigError:
            if conn is not None:
                conn.close()
            raise
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            text = str(exc)
            reason = next((r for k, r in _REASONS.items() if k in text), "cannot be used")
            raise self._config_error(f"{reason}: {text}") from exc
        self._conn = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Walk the schema to SCHEMA_VERSION in one write transaction (proves writability)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise self._config_error(
                    f"has schema version {version}, newer than this server's {SCHEMA_VERSION} "
                    "(written by a newer release?)"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {step}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if 0 < version < SCHEMA_VERSION:
            log.info(
                "%s: schema migrated from version %d to %d", self.describe, version, SCHEMA_VERSION
            )

    async def close(self) -> None:
        if self._claimer is not None:  # logins in flight get their answer first
            await asyncio.wait({self._claimer})
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        finally:
            executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- the contract -------------------------------------------------------
    async def claim(self, key: str, epoch: int) -> dict[str, Any] | None:
        # Logins arriving while the thread is busy share the next transaction:
        # a login storm costs one commit per thread pass, not one per login.
        done: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._claims.append((key, epoch, done))
        if self._claimer is None:
            self._claimer = asyncio.get_running_loop().create_task(self._drain_claims())
        return await done

    async def _drain_claims(self) -> None:
        try:
            while self._claims:
                batch, self._claims = self._claims, []
                try:
                    results = await self._call(self._claim_sync, [(k, e) for k, e, _ in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, _, done), result in zip(batch, results, strict=True):
                    if done.done():
                        continue  # the login gave up (cancelled)
                    if isinstance(result, BaseException):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._claimer = None

    def _claim_sync(self, claims: list[tuple[str, int]]) -> list[dict[str, Any] | None | Exception]:
        """Claim each ``(key, epoch)`` in order, in one transaction; fenced ones fail alone."""
        conn = self.conn
        results: list[dict[str, Any] | None | Exception] = []
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for key, epoch in claims:
                row = conn.execute(
                    "SELECT data, epoch FROM player_state WHERE key = ?", (key,)
                ).fetchone()
                if row is not None and row[1] > epoch:
                    results.append(FencedError(key, epoch, row[1]))
                    continue
                if row is None:
                    conn.execute(_UPSERT, (key, None, epoch, now))
                else:
                    conn.execute("UPDATE player_state SET epoch = ? WHERE key = ?", (epoch, key))
                try:
                    results.append(loads(row[0]) if row is not None else None)
                except ValueError as exc:  # a hand-edited row: fail this login, not the batch
                    results.append(StoreUnavailable(f"{self.describe}: player {key!r}: {exc}"))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    async def write(self, batch: Sequence[Row]) -> list[str]:
        encoded = [(key, dumps(data), epoch) for key, data, epoch in batch]  # before the lock
        return await self._call(self._write_sync, encoded)

    def _write_sync(self, rows: list[tuple[str, str, int]]) -> list[str]:
        conn = self.conn
        now = time.time()
        fenced: list[str] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for key, text, epoch in rows:
                if conn.execute(_FENCED_UPSERT, (key, text, epoch, now)).rowcount == 0:
                    fenced.append(key)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return fenced

    async def get(self, key: str) -> tuple[dict[str, Any], int] | None:
        row = await self._call(self._get_sync, key)
        if row is None or row[0] is None:
            return None
        data = loads(row[0])
        return None if data is None else (data, row[1])

    def _get_sync(self, key: str) -> tuple[str | None, int] | None:
        return self.conn.execute(
            "SELECT data, epoch FROM player_state WHERE key = ?", (key,)
        ).fetchone()

    async def items(self) -> AsyncIterator[Row]:
        after = ""
        while True:
            page = await self._call(self._page_sync, after)
            for key, text, epoch in page:
                data = loads(text)
                if data is not None:
                    yield key, data, epoch
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    def _page_sync(self, after: str) -> list[tuple[str, str, int]]:
        return self.conn.execute(
            "SELECT key, data, epoch FROM player_state WHERE key > ? AND data IS NOT NULL "
            "ORDER BY key LIMIT ?",
            (after, _PAGE),
        ).fetchall()

    async def put(self, key: str, data: dict[str, Any], epoch: int) -> None:
        await self._call(self._put_sync, key, dumps(data), epoch)

    def _put_sync(self, key: str, text: str, epoch: int) -> None:
        self.conn.execute(_UPSERT, (key, text, epoch, time.time()))  # autocommit
