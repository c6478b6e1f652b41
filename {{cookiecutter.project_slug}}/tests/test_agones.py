"""The Agones lifecycle against a stand-in of the SDK sidecar's REST API.

The real sidecar needs a cluster; ``agones_sidecar.StandInSidecar`` speaks its
documented REST API on 127.0.0.1 from threads of its own. The lifecycle runs
in a real ``serve`` process; the blocked-loop and watch tests run the server
in-process, where the test can block its loop and read its state.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agones_sidecar import StandInSidecar
from testkit import ServeProcess, free_port, until

from {{ cookiecutter.package_name }}.settings import (
    Settings,
)
from {{ cookiecutter.package_name }}.sgs import (
    Client,
    PingReq,
    PongResp,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.agones import (
    LocalAgones,
)
from {{ cookiecutter.package_name }}.sgs.agones.sdk import (
    CALL_TIMEOUT,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)

INTERVAL = 0.2  # health period of these tests


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def agones_serve(
    workdir: Path, sdk_port: int, interval: float = INTERVAL, flag: bool = False
) -> ServeProcess:
    """``serve`` with agones on (by setting, or ``--agones``), its SDK port in the env as Agones gives it."""
    return ServeProcess(
        workdir,
        *(["--agones"] if flag else []),
        env={**os.environ, "AGONES_SDK_HTTP_PORT": str(sdk_port)},
        protocol=None,  # the project's own, as ping() speaks it
        agones=None if flag else "true",
        agones_health_interval=str(interval),
        store_url="memory://",
        drain_timeout="2",
    )


async def ping(port: int) -> None:
    async with Client("127.0.0.1", port, protocol=Settings().protocol, connect_timeout=5) as c:
        assert isinstance(await c.request(PingReq(client_time_ms=1), timeout=5), PongResp)


async def stop_serve(proc: ServeProcess) -> str:
    """SIGTERM, then the exit code must be 0; returns what the server logged."""
    code, log = await proc.stopped_by(signal.SIGTERM)
    assert code == 0, log
    assert "Traceback" not in log, log
    return log


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


# --- a real serve process --------------------------------------------------------


async def test_ready_after_listen_health_at_the_period_shutdown_after_drain(
    tmp_path: Path,
) -> None:
    listening_at_ready: list[bool] = []
    at_shutdown: list[tuple[bool, bytes | None]] = []
    player: socket.socket | None = None

    def shutdown_seen() -> None:
        """At Shutdown, the drain must be over: the player's link closed, the port shut."""
        assert player is not None
        at_shutdown.append((port_open(proc.port), read_until_eof(player)))

    with StandInSidecar() as sidecar:
        proc = agones_serve(tmp_path, sidecar.port)
        # The log names the port before Ready: it must be open by then.
        sidecar.hooks["/ready"] = lambda: listening_at_ready.append(port_open(proc.logged_port()))
        sidecar.hooks["/shutdown"] = shutdown_seen
        try:
            await proc.start()
            game_port = proc.port
            ready_at = (await asyncio.to_thread(sidecar.wait_for, "/ready"))[0]
            assert listening_at_ready == [True], "Ready came before the game port listened"
            labels = [c for c in sidecar.calls if c.path == "/metadata/label"]
            assert labels and labels[0].body == {"key": "protocol", "value": Settings().protocol}
            assert labels[0].at <= ready_at  # selectable by codec once Ready

            health = await asyncio.to_thread(sidecar.wait_for, "/health", 8)
            period = gaps(health[-6:])
            assert min(period) > INTERVAL * 0.25, period  # no bursts
            assert sum(period) / len(period) < INTERVAL * 2.5, period  # about the period

            # A player connects to a server that is only Ready: it allocates itself,
            # and the players counter follows the links.
            player = socket.create_connection(("127.0.0.1", game_port), timeout=5)
            await asyncio.to_thread(sidecar.wait_for, "/allocate")
            await until(lambda: sidecar.gameserver.counters["players"]["count"] == 1)
            assert sidecar.gameserver.state == "Allocated"

            log = await stop_serve(proc)
        finally:
            proc.kill()
            if player is not None:
                player.close()
        assert at_shutdown == [(False, b"")], "Shutdown came before the drain ended"
        shutdown = sidecar.times("/shutdown")
        assert len(shutdown) == 1, sidecar.paths()
        assert not [t for t in sidecar.times("/health") if t > shutdown[0]]
        assert sidecar.gameserver.state == "Shutdown"
        assert "shutting down while Allocated" in log


def read_until_eof(sock: socket.socket) -> bytes | None:
    """b"" when the peer has closed (after whatever it sent), None while it is open."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return None
    except ConnectionResetError:
        pass  # closed by an abort: closed all the same
    return b""


async def test_a_sidecar_that_starts_late_is_retried(tmp_path: Path) -> None:
    sdk_port = free_port()  # nothing listens there yet
    proc = agones_serve(tmp_path, sdk_port, flag=True)
    try:
        await proc.start()  # serving without any sidecar
        game_port = proc.port
        await ping(game_port)
        await asyncio.sleep(1.0)  # several failed attempts
        with StandInSidecar(sdk_port) as sidecar:
            await asyncio.to_thread(sidecar.wait_for, "/ready", 1, 15)
            await asyncio.to_thread(sidecar.wait_for, "/health", 3, 15)
            await ping(game_port)  # the game never stopped
            log = await stop_serve(proc)
            assert sidecar.paths()[-1] == "/shutdown"
    finally:
        proc.kill()
    # One line per failure streak, not one per attempt.
    assert log.count("Agones: ready failed") == 1, log
    assert "Agones: ready works again after" in log


async def test_a_sidecar_answering_errors_never_stops_the_game(tmp_path: Path) -> None:
    with StandInSidecar() as sidecar:
        sidecar.fail_status = 503
        proc = agones_serve(tmp_path, sidecar.port)
        try:
            await proc.start()
            game_port = proc.port
            await ping(game_port)
            await asyncio.to_thread(sidecar.wait_for, "/ready", 4)
            for _ in range(5):  # answering all along
                await ping(game_port)
                await asyncio.sleep(INTERVAL)
            tries = sidecar.times("/ready")
            assert gaps(tries)[-1] > gaps(tries)[0], "no backoff between Ready attempts"
            assert len(sidecar.times("/health")) >= 5  # pings go on, failing or not
            sidecar.fail_status = None  # it recovers
            await asyncio.to_thread(sidecar.wait_for, "/ready", len(tries) + 1, 15)
            await until(lambda: sidecar.gameserver.state == "Ready")
            await stop_serve(proc)
        finally:
            proc.kill()
        assert sidecar.gameserver.state == "Shutdown"


# --- in-process: the loop and the state ---------------------------------------------


def agones_settings(sdk_port: int) -> dict[str, Any]:
    return {"agones": True, "agones_sdk_port": sdk_port, "agones_health_interval": 0.1}


async def test_a_blocked_event_loop_stops_the_health_pings() -> None:
    with StandInSidecar() as sidecar:
        async with running_server(**agones_settings(sidecar.port)):
            await asyncio.to_thread(sidecar.wait_for, "/health", 5)
            blocked_at = time.monotonic()
            time.sleep(1.5)  # what a handler stuck in a blocking call does
            unblocked_at = time.monotonic()
            await asyncio.to_thread(sidecar.wait_for, "/health", len(sidecar.times("/health")) + 3)
        # A ping already on the wire may land just after the block began.
        during = [t for t in sidecar.times("/health") if blocked_at + 0.3 < t < unblocked_at]
        assert during == [], "a health ping left while the loop was blocked"
        assert [t for t in sidecar.times("/health") if t > unblocked_at], "pings did not resume"


async def test_a_sidecar_that_never_answers_holds_one_ping_at_a_time() -> None:
    """Accepted and never answered: calls time out, pings do not pile up, the game plays on."""
    connections = 0
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        held.append(writer)

    sidecar = await asyncio.start_server(silent, "127.0.0.1", 0)
    sdk_port = sidecar.sockets[0].getsockname()[1]
    try:
        async with running_server(**agones_settings(sdk_port)) as server:
            started = time.monotonic()
            for _ in range(10):  # about 3 s: 30 health periods
                await ping_in_process(server)
                await asyncio.sleep(0.3)
            rounds = math.ceil((time.monotonic() - started) / CALL_TIMEOUT) + 1
            # Per call timeout at most one health ping, one label or Ready, one watch
            # (one a period, were the pings not held back, would be 30 or more).
            assert connections <= 3 * rounds, (connections, rounds)
            assert not server.agones.ready
    finally:
        for writer in held:
            writer.close()
        sidecar.close()


async def ping_in_process(server: Server) -> None:
    async with Client("127.0.0.1", server.port or 0, connect_timeout=5) as c:
        assert isinstance(await c.request(PingReq(client_time_ms=1), timeout=5), PongResp)


async def test_the_watch_follows_allocation_and_runs_the_hooks() -> None:
    seen: list[dict[str, Any]] = []

    def setup(server: Server) -> None:
        server.agones.on_allocated(seen.append)

    with StandInSidecar() as sidecar:
        async with running_server(setup=setup, **agones_settings(sidecar.port)) as server:
            await until(lambda: server.agones.state == "Ready")
            sidecar.set_state("Allocated")  # a GameServerAllocation chose this server
            await until(lambda: server.agones.allocated and len(seen) == 1)
            assert seen[0]["object_meta"]["name"] == "standin-gs"
            watches = len(sidecar.times("/watch/gameserver"))
            sidecar.drop_watchers()  # the sidecar restarts: the watch comes back
            await asyncio.to_thread(sidecar.wait_for, "/watch/gameserver", watches + 1, 10)
            sidecar.set_state("Ready")
            await until(lambda: server.agones.state == "Ready")
            sidecar.set_state("Allocated")  # allocated again: the hooks run again
            await until(lambda: len(seen) == 2)


async def test_a_stale_gameserver_read_does_not_undo_an_allocation() -> None:
    """Allocated while the post-Ready GET is in flight: the older answer loses to the watch."""
    seen: list[dict[str, Any]] = []

    def setup(server: Server) -> None:
        server.agones.on_allocated(seen.append)

    def allocate_meanwhile() -> None:
        sidecar.set_state("Allocated")  # the watch carries it while "Ready" is on its way
        time.sleep(0.5)  # the server's loop is free: it reads the watch line first

    with StandInSidecar() as sidecar:
        sidecar.in_flight["/gameserver"] = allocate_meanwhile
        async with running_server(setup=setup, **agones_settings(sidecar.port)) as server:
            await asyncio.to_thread(sidecar.wait_for, "/gameserver")
            await until(lambda: "/gameserver" not in sidecar.in_flight and len(seen) == 1)
            await asyncio.sleep(1.0)  # the stale answer has long arrived
            assert server.agones.state == "Allocated"
            assert server.agones.allocated


async def test_a_missing_players_counter_is_reported_once_and_left_alone() -> None:
    with StandInSidecar() as sidecar:
        del sidecar.gameserver.counters["players"]
        async with running_server(**agones_settings(sidecar.port)) as server:
            await until(lambda: server.agones.state == "Ready")
            async with Client("127.0.0.1", server.port or 0):
                await asyncio.to_thread(sidecar.wait_for, "/allocate")
                await asyncio.to_thread(
                    sidecar.wait_for, "/health", len(sidecar.times("/health")) + 5
                )
        patches = [p for p in sidecar.paths("PATCH") if p.endswith("/players")]
        assert len(patches) == 1, patches


def test_agones_is_off_by_default(isolated: Any) -> None:
    settings = Settings()
    assert settings.agones is False
    assert isinstance(Server(settings).agones, LocalAgones)


def test_agones_runs_one_process_per_pod(isolated: Any) -> None:
    with pytest.raises(ValidationError, match="agones = true with workers = 2"):
        Settings(agones=True, workers=2, cluster_url="redis://127.0.0.1:6379/0")
