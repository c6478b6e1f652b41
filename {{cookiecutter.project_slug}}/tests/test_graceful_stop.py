"""Graceful stop of a real server process: SIGTERM with requests in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

import fwkit
from fwkit import EchoReq, SlowReq

from {{ cookiecutter.package_name }}.sgs import (
    Client,
    CloseReason,
    Link,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.testing import running_server

PACKAGE = "{{ cookiecutter.package_name }}"
SERVER_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    sys.path.insert(0, {tests!r})
    import fwkit
    from {package}.sgs import Server, ServerSettings
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings = ServerSettings(host="127.0.0.1", port=0, resource_model={model!r}, drain_timeout=5)
    server = Server(settings, fwkit.router, fwkit.catalog)
    sys.exit(server.run())
    """
)


async def start_process(model: str) -> asyncio.subprocess.Process:
    script = SERVER_SCRIPT.format(tests=str(Path(__file__).parent), package=PACKAGE, model=model)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc


async def wait_listening(proc: asyncio.subprocess.Process) -> int:
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert line, "server exited before listening"
        if "listening on" in line:
            return int(line.split("listening on ")[1].split(" ")[0].rsplit(":", 1)[1])


@pytest.mark.parametrize("model", fwkit.MODELS)
async def test_sigterm_answers_requests_in_flight_and_exits_zero(model: str) -> None:
    proc = await start_process(model)
    port = await wait_listening(proc)
    clients = [await Client("127.0.0.1", port, catalog=fwkit.catalog).connect() for _ in range(4)]
    requests = [
        asyncio.ensure_future(c.request(SlowReq(seq=k, delay=0.02), timeout=10))
        for c in clients
        for k in range(10)
    ]
    await asyncio.sleep(0.05)  # every request is on the server, most not yet answered
    proc.send_signal(signal.SIGTERM)
    replies = await asyncio.gather(*requests)
    assert sorted(r.seq for r in replies) == sorted(list(range(10)) * 4)
    for c in clients:
        await asyncio.wait_for(c.wait_closed(), 10)  # the server closed every link
    code = await asyncio.wait_for(proc.wait(), 15)
    rest = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    assert code == 0, rest
    assert "graceful stop" in rest and "stopped" in rest
    assert "Traceback" not in rest


@pytest.mark.parametrize("model", fwkit.MODELS)
async def test_stop_closes_links_with_server_shutdown(model: str) -> None:
    reasons: list[object] = []

    def setup(server: Server) -> None:
        @server.on_disconnect
        def gone(link: Link) -> None:
            reasons.append(link.close_reason)

    async with running_server(
        fwkit.router, fwkit.catalog, setup=setup, resource_model=model
    ) as server:
        clients = [
            await Client("127.0.0.1", server.port or 0, catalog=fwkit.catalog).connect()
            for _ in range(3)
        ]
        for c in clients:
            await c.request(EchoReq(seq=1, text="hi"))
    assert reasons == [CloseReason.SERVER_SHUTDOWN] * 3
    for c in clients:
        await asyncio.wait_for(c.wait_closed(), 5)


async def test_new_connections_refused_while_stopping() -> None:
    async with running_server(fwkit.router, fwkit.catalog) as server:
        port = server.port or 0
    with pytest.raises(OSError):
        await Client("127.0.0.1", port, catalog=fwkit.catalog, connect_timeout=1).connect()
