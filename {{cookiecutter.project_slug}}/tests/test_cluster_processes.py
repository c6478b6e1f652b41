"""Cluster nodes as OS processes that a test kills (SIGKILL) or freezes (SIGSTOP).

A node killed without a word is noticed only through its lease: a live node
reaps its bindings and room memberships within ``cluster_lease`` plus one
reaper cycle. A node frozen for less than its lease is not reaped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from redis_server import RedisServer
from testkit import ServeProcess

from {{ cookiecutter.package_name }}.client import GameClient
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.messages import RoomTick
from {{ cookiecutter.package_name }}.sgs.testing import running_server

LEASE = 1.5
PREFIX = "sgs"
TIMEOUT = 10.0


@pytest.fixture
def node_process(redis_server: RedisServer, tmp_path: Path) -> Iterator[ServeProcess]:
    """``serve`` as node ``victim`` (the test starts it), killed after the test whatever happens."""
    proc = ServeProcess(
        tmp_path,
        name="victim",
        cluster_url=redis_server.url,
        node_id="victim",
        cluster_lease=str(LEASE),
        store_url="memory://",
    )
    try:
        yield proc
    finally:
        proc.kill()


def victim_traces(r: redis_sync.Redis) -> tuple[bytes | None, list[bytes]]:
    """Who holds the login 'ghost', and the victim's members of room 'haunt'."""
    holder = r.hget(f"{PREFIX}:bind:ghost", "node")
    members = [f for f in r.hkeys(f"{PREFIX}:gmembers:room:haunt") if f.startswith(b"victim/")]
    return holder, members


async def test_killed_node_is_reaped_within_its_lease_and_a_stopped_one_is_not(
    redis_server: RedisServer, node_process: ServeProcess
) -> None:
    await node_process.start()
    port, proc = node_process.port, node_process.proc
    assert proc is not None
    async with running_server(
        router,
        setup=setup,
        cluster_url=redis_server.url,
        node_id="watcher",
        cluster_lease=LEASE,
        cluster_timeout=1.0,
    ) as watcher:
        far = GameClient("127.0.0.1", port, timeout=TIMEOUT)
        near = GameClient("127.0.0.1", watcher.port, timeout=TIMEOUT)
        ticks: list[RoomTick] = []
        near.on_room_tick(ticks.append)
        async with near:
            await far.connect()
            await far.login("ghost")
            await far.join("haunt")
            await near.login("medium")
            assert (await near.join("haunt")).members == ["ghost", "medium"]
            with redis_sync.Redis(port=redis_server.port) as r:
                holder, members = victim_traces(r)
                assert holder == b"victim" and len(members) == 1

                # Frozen for less than its lease: nobody reaps it.
                os.kill(proc.pid, signal.SIGSTOP)
                await asyncio.sleep(LEASE * 0.5)
                os.kill(proc.pid, signal.SIGCONT)
                await asyncio.sleep(LEASE)
                assert victim_traces(r) == (b"victim", members)
                assert watcher.cluster.stats.reaped == 0
                assert await far.echo("still here") == "still here"

                # Killed: reaped within the lease plus one reaper cycle.
                proc.kill()
                proc.wait(timeout=10)
                killed = time.monotonic()
                while victim_traces(r) != (None, []):
                    assert time.monotonic() - killed < LEASE + 1.0 + 1.0, "not reaped in time"
                    await asyncio.sleep(0.05)
                assert watcher.cluster.stats.reaped == 1
                assert sorted(await watcher.cluster.nodes()) == ["watcher"]
            await far.close()
            assert (await near.join("haunt")).members == ["medium"]
            # RoomTick goes on from the surviving node, numbering where it was.
            before = len(ticks)
            deadline = time.monotonic() + TIMEOUT
            while not any(t.members == 1 for t in ticks[before:]):
                assert time.monotonic() < deadline, ticks
                await asyncio.sleep(0.05)
            numbers = [t.tick for t in ticks]
            assert numbers == sorted(set(numbers)), "one numbering, never reset or repeated"
            assert "room:haunt" not in watcher.cluster.interest
        # The account is free: a login elsewhere needs no hand-over.
        async with GameClient("127.0.0.1", watcher.port, timeout=TIMEOUT) as again:
            started = time.monotonic()
            await again.login("ghost")
            assert time.monotonic() - started < 1.0
