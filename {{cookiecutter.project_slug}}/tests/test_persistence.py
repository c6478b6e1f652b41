"""Player state survives restarts and crashes: real `serve` processes, a real SQLite file, a real Redis.

The business counter is the player's state. After SIGTERM (a graceful stop
flushes everything) a login returns every acknowledged request. After SIGKILL,
``store_sync = "always"`` loses nothing acknowledged; write-behind loses at
most the updates of the last flush interval. Neither ever counts more than
was sent.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from redis_server import RedisServer
from testkit import ServeProcess, command, serve_env

from {{ cookiecutter.package_name }}.client import (
    GameClient,
    run_robots,
)
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.sgs.testing import running_server

TIMEOUT = 10.0


def client_of(proc: ServeProcess) -> GameClient:
    return GameClient("127.0.0.1", proc.port, timeout=TIMEOUT)


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.kill()


def store_urls(tmp_path: Path, redis_url: str | None) -> str:
    return redis_url if redis_url else f"sqlite:///{tmp_path / 'var' / 'game.db'}"


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_counter_survives_sigterm_and_restart(
    backend: str, tmp_path: Path, redis_server: RedisServer, processes: list[ServeProcess]
) -> None:
    url = redis_server.url if backend == "redis" else "sqlite:///var/game.db"
    settings = {"store_url": url, "store_flush_interval": "30"}  # only the stop flushes
    first = ServeProcess(tmp_path, **settings)
    processes.append(first)
    await first.start()
    async with client_of(first) as c:
        assert (await c.login("keeper")).counter == 0
        for k in range(25):
            assert (await c.business(k, k, 1)).result == k + 1
    code, log = first.stop()
    assert code == 0, log
    if backend == "sqlite":
        assert (tmp_path / "var" / "game.db").is_file(), "relative to the working directory"
    second = ServeProcess(tmp_path, **settings)
    processes.append(second)
    await second.start()
    async with client_of(second) as c:
        assert (await c.login("keeper")).counter == 25
    assert second.stop()[0] == 0


async def _business_stream(c: GameClient, acked: list[float], sent: list[int]) -> None:
    k = 0
    try:
        while True:
            sent[0] += 1
            await c.business(k, 1, 1)
            acked.append(time.monotonic())
            k += 1
    except Exception:  # the server was killed under us
        return


@pytest.mark.parametrize("sync", ["always", "write_behind"])
async def test_sigkill_loses_at_most_what_the_mode_allows(
    sync: str, tmp_path: Path, processes: list[ServeProcess]
) -> None:
    interval = 0.2
    settings = {
        "store_url": "sqlite:///var/game.db",
        "store_sync": sync,
        "store_flush_interval": str(interval),
    }
    first = ServeProcess(tmp_path, **settings)
    processes.append(first)
    await first.start()
    acked: list[float] = []
    sent = [0]
    c = client_of(first)
    await c.connect()
    await c.login("crasher")
    stream = asyncio.create_task(_business_stream(c, acked, sent))
    deadline = time.monotonic() + TIMEOUT
    while len(acked) < 300:
        assert time.monotonic() < deadline and not stream.done()
        await asyncio.sleep(0.01)
    killed_at = time.monotonic()
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.communicate()
    await asyncio.wait_for(stream, TIMEOUT)
    await c.close()
    second = ServeProcess(tmp_path, **settings)
    processes.append(second)
    await second.start()
    async with client_of(second) as again:
        counter = (await again.login("crasher")).counter
    assert counter <= sent[0], "never more than was sent"
    if sync == "always":
        # Every acknowledged update is durable; the one in flight may be too.
        assert len(acked) <= counter
    else:
        # Updates acknowledged in the last flush interval (plus one flush's
        # time to commit) may be missing, nothing older.
        settled = sum(1 for t in acked if t <= killed_at - 2 * interval - 0.1)
        assert settled <= counter, (settled, counter, len(acked))
    assert second.stop()[0] == 0


@pytest.mark.parametrize("model", ["per_link", "shared_all"])
async def test_write_through_serves_many_links_with_shared_commits(
    model: str, tmp_path: Path
) -> None:
    """store_sync = "always": every reply waits for a commit, and passes share them."""
    async with running_server(
        router,
        setup=setup,
        resource_model=model,
        store_url=f"sqlite:///{tmp_path / 'always.db'}",
        store_sync="always",
    ) as server:
        report = await run_robots("127.0.0.1", server.port, robots=20, requests=30, timeout=TIMEOUT)
        assert report.ok, report.failures
        stats = server.store.stats
        assert stats.commits >= 20 * 30, "one commit awaited per pass with business"
        assert stats.flushes < stats.commits, "commits shared transactions"
        assert stats.dirty == 0


async def test_paused_redis_store_keeps_the_server_serving_and_flushes_when_back(
    tmp_path: Path, redis_server: RedisServer, processes: list[ServeProcess]
) -> None:
    settings = {"store_url": redis_server.url, "store_flush_interval": "0.2"}
    server = ServeProcess(tmp_path, **settings)
    processes.append(server)
    await server.start()
    async with client_of(server) as c:
        await c.login("patient")
        for k in range(5):
            await c.business(k, 0, 0)
        redis_server.pause()
        try:
            for k in range(20):  # replies keep coming: the flush is not on the request path
                assert (await c.business(k, 2, 2)).result == 4
            assert await c.echo("alive") == "alive"
            await asyncio.sleep(1.0)
        finally:
            redis_server.resume()
        with redis_sync.Redis(port=redis_server.port) as r:
            deadline = time.monotonic() + TIMEOUT
            while b'"counter":25' not in (r.hget("sgs:player:patient", "data") or b"").replace(
                b" ", b""
            ):
                assert time.monotonic() < deadline, r.hgetall("sgs:player:patient")
                await asyncio.sleep(0.1)
    code, log = server.stop()
    assert code == 0
    assert "store" in log.lower(), "the failed flush was logged"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite:///var", "store_url"),
        ("sqlite:////proc/no-such-folder/game.db", "store_url"),
        ("postgres://db/game", "store_url"),
    ],
)
def test_bad_store_url_stops_start_up_with_a_clear_message(
    url: str, says: str, tmp_path: Path
) -> None:
    (tmp_path / "var").mkdir()
    proc = subprocess.run(
        command("serve", "--host", "127.0.0.1", "--port", "0"),
        cwd=tmp_path,
        env=serve_env({"store_url": url}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert says in out and "Traceback" not in out, out
