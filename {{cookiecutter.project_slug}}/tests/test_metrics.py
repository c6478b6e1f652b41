"""/metrics, /healthz and /readyz of a real server, scraped over HTTP on 127.0.0.1.

Counters are checked against what the test itself sent (robots, deliberate
bad frames), so a metric that counts the wrong thing fails here. The HTTP
client is the standard library's, run in a thread: the server under test
shares this test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import fwkit
from fwkit import SlowReq
from testkit import free_port

from {{ cookiecutter.package_name }}.client import (
    GameClient,
    run_robots,
)
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.settings import (
    Settings,
)
from {{ cookiecutter.package_name }}.sgs import (
    Client,
    RemoteError,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.metrics import (
    MetricsPortError,
)
from {{ cookiecutter.package_name }}.sgs.metrics.scrape import (
    Unreachable,
    http_get,
)
from {{ cookiecutter.package_name }}.sgs.testing import running_server

TIMEOUT = 5.0
ROBOTS, REQUESTS = 4, 5


async def get(server: Server, path: str) -> tuple[int, str]:
    """GET ``path`` on the server's metrics port from a thread (the loop keeps serving)."""
    address = server.metrics.address
    assert address is not None, "metrics are off"
    return await asyncio.to_thread(http_get, f"http://127.0.0.1:{address[1]}{path}", TIMEOUT)


async def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}, via prometheus_client's parser."""
    status, body = await get(server, "/metrics")
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@contextlib.asynccontextmanager
async def metered(*args: Any, **settings: Any) -> AsyncIterator[Server]:
    """``running_server`` with metrics on a free port (another is tried if it was just taken)."""
    for _attempt in range(5):
        stack = contextlib.AsyncExitStack()
        try:
            server = await stack.enter_async_context(
                running_server(
                    *args, metrics_port=free_port(), metrics_host="127.0.0.1", **settings
                )
            )
        except MetricsPortError:
            continue
        async with stack:
            yield server
        return
    raise AssertionError("no free port for metrics in 5 tries")


@contextlib.asynccontextmanager
async def game_with_metrics(**settings: Any) -> AsyncIterator[Server]:
    async with metered(
        router, setup=functools.partial(setup, tick_interval=60.0), protocol="json", **settings
    ) as server:
        yield server


async def test_counters_equal_what_a_robot_run_and_bad_input_sent() -> None:
    async with game_with_metrics(resource_model="shared_all", logic_workers=2) as server:
        report = await run_robots(
            "127.0.0.1", server.port, robots=ROBOTS, requests=REQUESTS, room_size=2, seed=7
        )
        assert report.ok, report.summary()
        # Deliberate bad input on one raw link: an unknown id, an undecodable
        # echo, and a members-only request before logging in.
        raw = await fwkit.RawConn.open(server.port)
        raw.writer.write(fwkit.frame(4242, b"{}") + fwkit.frame(9, b"not json{"))
        await raw.writer.drain()
        async with GameClient("127.0.0.1", server.port, protocol="json", timeout=TIMEOUT) as c:
            try:
                await c.business(1, 2, 3)
            except RemoteError as exc:
                assert exc.error.code == "not_logged_in"
            else:
                raise AssertionError("business before login was answered")
            assert await c.echo("after") == "after"
        raw.writer.close()
        samples = await scrape(server)

    sent = {"LoginReq": ROBOTS, "BusinessReq": ROBOTS * REQUESTS + 1, "JoinRoomReq": ROBOTS}
    sent |= {"SayReq": ROBOTS, "LogoutReq": ROBOTS, "EchoReq": 2}  # one of them undecodable
    for message, n in sent.items():
        assert value(samples, "sgs_frames_received_total", message=message) == n, message
    handled = {**sent, "EchoReq": 1}
    for message, n in handled.items():
        assert value(samples, "sgs_handler_seconds_count", message=message) == n, message
        buckets = value(samples, "sgs_handler_seconds_bucket", message=message, le="+Inf")
        assert buckets == n and value(samples, "sgs_handler_seconds_sum", message=message) > 0
    assert value(samples, "sgs_frames_received_total", message="RoomTick") == 0
    assert value(samples, "sgs_errors_total", code="unknown_message") == 1
    assert value(samples, "sgs_errors_total", code="decode_error") == 1
    assert value(samples, "sgs_errors_total", code="not_logged_in") == 1
    assert value(samples, "sgs_protocol_errors_total") == 2
    assert value(samples, "sgs_links_accepted_total") == ROBOTS + 2
    # every frame sent, the unknown id included
    assert value(samples, "sgs_frames_in_total") == sum(sent.values()) + 1
    assert value(samples, "sgs_received_bytes_total") > 0
    assert value(samples, "sgs_frames_out_total") >= sum(handled.values()) - ROBOTS  # SayReq: push
    assert value(samples, "sgs_ready") == 1
    busy = sum(v for (name, _), v in samples.items() if name == "sgs_worker_busy_seconds_total")
    assert busy > 0
    assert ("sgs_worker_queue_depth", (("worker", "logic-1"),)) in samples
    assert value(samples, "sgs_event_loop_lag_seconds_count") >= 0
    assert value(samples, "process_resident_memory_bytes") > 0


async def test_links_open_and_closed_by_reason() -> None:
    async with game_with_metrics(resource_model="per_link") as server:
        async with GameClient("127.0.0.1", server.port, protocol="json", timeout=TIMEOUT) as c:
            await c.echo("hi")
            samples = await scrape(server)
            assert value(samples, "sgs_links_open", transport="tcp") == 1
            assert value(samples, "sgs_worker_busy_seconds_total", worker="per_link") > 0
        while server.links:
            await asyncio.sleep(0.01)
        samples = await scrape(server)
    assert value(samples, "sgs_links_open", transport="tcp") == 0
    assert value(samples, "sgs_links_closed_total", reason="remote_close") == 1


async def test_readyz_turns_not_ready_at_graceful_stop_while_healthz_stays_healthy() -> None:
    async with metered(fwkit.router, fwkit.catalog, drain_timeout=5.0) as server:
        assert await get(server, "/readyz") == (200, "ready\n")
        async with Client("127.0.0.1", server.port, catalog=fwkit.catalog) as client:
            slow = asyncio.ensure_future(client.request(SlowReq(seq=1, delay=1.0), timeout=10))
            await asyncio.sleep(0.1)  # the request is in the handler
            stopping = asyncio.ensure_future(server.stop())
            await asyncio.sleep(0.05)
            status, body = await get(server, "/readyz")
            assert status == 503 and "draining" in body
            health, during = await get(server, "/healthz")
            assert health == 200 and during.startswith("ok")
            assert not stopping.done()  # still draining: the slow reply is not out yet
            assert (await slow).seq == 1
            await stopping
    port = server.settings.metrics_port
    try:
        await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/healthz", 1.0)
    except Unreachable:
        pass
    else:
        raise AssertionError("the metrics port still answers after the stop")


async def test_readyz_is_not_ready_while_the_cluster_lease_is_lost(redis_server: Any) -> None:
    async with game_with_metrics(cluster_url=redis_server.url, cluster_lease=1.0) as server:
        assert (await get(server, "/readyz"))[0] == 200
        redis_server.kill()
        for _ in range(100):
            status, body = await get(server, "/readyz")
            if status == 503 and "lease" in body:  # (the subscriber may be missed first)
                break
            await asyncio.sleep(0.1)
        assert status == 503 and "lease" in body, body
        assert (await get(server, "/healthz"))[0] == 200  # the process itself is fine
        samples = await scrape(server)
        assert value(samples, "sgs_cluster_lease_held") == 0 and value(samples, "sgs_ready") == 0
        redis_server.start()
        for _ in range(150):
            if (await get(server, "/readyz"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        assert (await get(server, "/readyz"))[0] == 200


async def _junk(port: int, data: bytes) -> bytes:
    """Send ``data``, read until the endpoint closes; b"reset" when it cut us off mid-send."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    except ConnectionError:
        return b"reset"
    finally:
        writer.close()


def status_of(answer: bytes) -> str:
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else answer.decode()


async def _drain(reader: asyncio.StreamReader) -> bytes:
    with contextlib.suppress(ConnectionError):
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    return b"reset"


async def test_junk_on_the_metrics_port_leaves_game_clients_unaffected() -> None:
    async with game_with_metrics() as server:
        assert server.metrics.address is not None
        mport = server.metrics.address[1]
        server.metrics.http.read_timeout = 0.5  # slow clients are cut off sooner in this test
        async with GameClient("127.0.0.1", server.port, protocol="json", timeout=TIMEOUT) as game:
            # Slow clients: idle ones and half-sent requests hold connections open.
            held = [await asyncio.open_connection("127.0.0.1", mport) for _ in range(20)]
            for _reader, writer in held[:10]:
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
            echoes = [game.echo(f"hello {i}") for i in range(200)]
            answers = await asyncio.gather(
                asyncio.gather(*echoes),
                _junk(mport, b"\x00\xff" * 20_000),  # binary, no line end: too large
                _junk(mport, b"HELLO THERE\r\n\r\n"),
                _junk(mport, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"),
                _junk(mport, b"POST /metrics HTTP/1.1\r\n\r\n"),
                _junk(mport, b"GET /nowhere HTTP/1.1\r\n\r\n"),
            )
            assert answers[0] == [f"hello {i}" for i in range(200)]
            statuses = [status_of(a) for a in answers[1:]]
            assert statuses[0] in ("431", "reset") and statuses[2] in ("431", "reset"), statuses
            assert statuses[1] == "400" and statuses[3:] == ["405", "404"], statuses
            # The read timeout answers the slow ones 408 and closes them.
            slow = await asyncio.gather(*(_drain(reader) for reader, _ in held))
            assert {status_of(a) for a in slow} == {"408"}
            for _, writer in held:
                writer.close()
            # More clients at once than the endpoint takes: the extra ones are dropped at once.
            crowd = [await asyncio.open_connection("127.0.0.1", mport) for _ in range(40)]
            assert await game.echo("still here") == "still here"
            await asyncio.gather(*(_drain(reader) for reader, _ in crowd))
            for _, writer in crowd:
                writer.close()
        assert server.metrics.http.rejected >= 8 + 20 + 5
        status, _ = await get(server, "/healthz")
        assert status == 200
        samples = await scrape(server)
        assert value(samples, "sgs_metrics_rejected_total") == server.metrics.http.rejected


# --- the shipped dashboards read metrics the server really exports ------------------

REPO = Path(__file__).resolve().parents[1]
METRIC_NAME = re.compile(r"\b((?:sgs|process|python)_[a-z0-9_]+)\b")


def dashboard_metric_names() -> set[str]:
    names: set[str] = set()
    for path in sorted((REPO / "ops" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            for target in panel.get("targets", []):
                names |= set(METRIC_NAME.findall(target["expr"]))
    return names


async def test_dashboard_queries_name_metrics_a_cluster_node_exports(redis_server: Any) -> None:
    wanted = dashboard_metric_names()
    assert {"sgs_handler_seconds_count", "sgs_errors_total", "sgs_links_open"} <= wanted
    async with game_with_metrics(cluster_url=redis_server.url) as server:
        async with GameClient("127.0.0.1", server.port, protocol="json", timeout=TIMEOUT) as c:
            await c.echo("x")
        exported = {name for name, _labels in await scrape(server)}
    assert wanted <= exported, sorted(wanted - exported)


def test_prometheus_scrapes_the_default_metrics_port() -> None:
    """ops/prometheus.yml names game:<metrics_port>; the default must match it."""
    text = (REPO / "ops" / "prometheus.yml").read_text(encoding="utf-8")
    default = Settings.model_fields["metrics_port"].default
    assert re.search(rf'targets: \["game:{default}"\]', text), text
