"""`serve --workers N`: a supervisor over N real server processes sharing one port.

Everything here is a real process: the supervisor is started the way a user
starts it (`python -m <package> serve --workers 2`), its workers are the
ordinary `serve` command, and the cluster URL points at a real redis-server.
Which worker served which client is read from the workers' own log lines
(the supervisor prefixes each with the worker's pid; the framework logs
every accepted peer at DEBUG), so a test fails if one process took every
connection. Each test starts the supervisor in a session of its own and kills
that whole process group in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_server import RedisServer
from testkit import SUPERVISOR, WORKER_LISTENING, Supervised, free_port_pair

from {{ cookiecutter.package_name }}.messages import (
    BusinessReq,
    LoginReq,
    catalog,
)
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    Settings,
)
from {{ cookiecutter.package_name }}.sgs import (
    Client,
)
from {{ cookiecutter.package_name }}.sgs.supervisor import (
    reuse_port_supported,
)

PACKAGE = "{{ cookiecutter.package_name }}"
PROTOCOL = str(Settings.model_fields["protocol"].default)
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 25.0
BURST = 200  # requests per link in flight at SIGTERM (below inbound_limit: no pause)

pytestmark = [
    pytest.mark.usefixtures("isolated"),
    pytest.mark.skipif(not reuse_port_supported(), reason="SO_REUSEPORT balancing is Linux-only"),
]

PEER = re.compile(r"^\[worker \d+ pid (\d+)\] .*link \d+ open from \('127\.0\.0\.1', (\d+)\)", re.M)


@contextlib.contextmanager
def supervised(args: list[str], log: Path, **settings: str) -> Iterator[Supervised]:
    # metrics_port 0 (off) unless a test asks: the default 9100 (+1 for worker 2) is one
    # fixed port, and a supervisor of another test or another checkout may hold it.
    settings = {"metrics_port": "0", **settings}
    env = {**os.environ, **{f"{ENV_PREFIX}{k.upper()}": v for k, v in settings.items()}}
    sup = Supervised(args, env, log)
    try:
        yield sup
    finally:
        sup.kill_all()


def two_workers(
    redis: RedisServer, log: Path, *extra: str, **settings: str
) -> contextlib.AbstractContextManager[Supervised]:
    """`serve --workers 2` on a free port of 127.0.0.1, a cluster node per worker."""
    args = ["--workers", "2", "--host", "127.0.0.1", "--port", "0", "--protocol", PROTOCOL, *extra]
    # memory:// keeps these tests about processes, not about where player state lives.
    return supervised(args, log, cluster_url=redis.url, store_url="memory://", **settings)


async def wait_serving(sup: Supervised) -> tuple[int, dict[int, int]]:
    """The shared port and {worker index: pid} once both workers listen on it."""
    (head,) = await sup.wait_for(SUPERVISOR, timeout=STARTUP_TIMEOUT)
    port = int(head.group(3))
    found = await sup.wait_for(WORKER_LISTENING, count=2, timeout=STARTUP_TIMEOUT)
    assert {int(m.group(3)) for m in found} == {port}, "every worker must bind the one port"
    pids = {int(m.group(1)): int(m.group(2)) for m in found}
    assert len(set(pids.values())) == 2, pids
    return port, pids


async def served_by(sup: Supervised, clients: list[Client]) -> dict[int, int]:
    """{client's local port: pid of the worker that accepted it}, from the DEBUG log."""
    ports = {c._transport.get_extra_info("sockname")[1] for c in clients}  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while True:
        seen = {int(m.group(2)): int(m.group(1)) for m in PEER.finditer(sup.text())}
        if ports <= set(seen):
            return {p: seen[p] for p in ports}
        assert time.monotonic() < deadline, f"no accept logged for {ports - set(seen)}"
        await asyncio.sleep(0.05)


async def test_two_workers_share_the_port_and_drain_on_sigterm(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with two_workers(redis_server, tmp_path / "serve.log", "--log-level", "DEBUG") as sup:
        port, pids = await wait_serving(sup)
        clients: list[Client] = []
        try:
            # The kernel hashes each connection's address to a worker: twelve
            # land on one worker about once in 2,000 runs, sixty-four never do
            # in practice (2**-63), so connect in batches until both served.
            owners: dict[int, int] = {}
            while set(owners.values()) != set(pids.values()) and len(clients) < 64:
                clients += [
                    await Client("127.0.0.1", port, protocol=PROTOCOL, catalog=catalog).connect()
                    for _ in range(16 if clients else 12)
                ]
                owners = await served_by(sup, clients)
            assert set(owners.values()) == set(pids.values()), (
                f"{len(clients)} connections, yet not both workers served one: {owners} {pids}"
            )
            for n, client in enumerate(clients):
                await client.request(LoginReq(account_id=f"drain-{n}"), timeout=10)
            # A burst on every link, in flight at the SIGTERM. A draining
            # worker stops reading at once and answers everything it had
            # read: each link gets an unbroken, in-order prefix of its
            # answers, then the close; never a gap, a wrong answer or a hang.
            burst = [
                [
                    asyncio.ensure_future(
                        c.request(BusinessReq(key=k, value1=k, value2=1), timeout=20)
                    )
                    for k in range(BURST)
                ]
                for c in clients
            ]
            # Every worker is reading its links before it is told to stop.
            await asyncio.wait_for(asyncio.gather(*(b[0] for b in burst)), 10)
            sup.proc.send_signal(signal.SIGTERM)
            killed_at = time.monotonic()
            replies = await asyncio.wait_for(
                asyncio.gather(*(asyncio.gather(*b, return_exceptions=True) for b in burst)), 30
            )
            answered_at = time.monotonic()
            for client in clients:  # every worker closed its links after draining
                await asyncio.wait_for(client.wait_closed(), 15)
            code = await sup.wait_exit(STOP_TIMEOUT)
        finally:
            for client in clients:
                await client.close()
        log = sup.text()
        assert code == 0, log
        answered = 0
        for got in replies:
            results = [getattr(r, "result", r) for r in got]
            done = next((i for i, r in enumerate(results) if isinstance(r, Exception)), BURST)
            assert results[:done] == [k + 1 for k in range(done)], "in order, no gap"
            assert all(isinstance(r, ConnectionError) for r in results[done:]), results[done:]
            answered += done
        assert answered >= len(clients)
        for pid in pids.values():
            assert re.search(rf"^\[worker \d pid {pid}\] .*graceful stop", log, re.M), log
            assert re.search(rf"^\[worker \d pid {pid}\] .*stopped \(exit code 0\)", log, re.M)
        assert "supervisor stopped: 2 of 2 workers exited 0" in log
        assert "Traceback" not in log, log
        took = answered_at - killed_at
        print(f"{answered} requests answered within {took:.3f}s of SIGTERM")


def test_workers_without_cluster_url_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", PACKAGE, "serve", "--workers", "2", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "workers" in result.stderr and "cluster_url" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


async def test_a_killed_worker_is_restarted_and_the_port_stays_served(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    metrics = free_port_pair()  # the healthcheck asks the restarted worker's /readyz
    with two_workers(redis_server, tmp_path / "serve.log", metrics_port=str(metrics)) as sup:
        port, pids = await wait_serving(sup)
        os.kill(pids[1], signal.SIGKILL)
        # Connections the kernel queued on the dying worker's socket are reset;
        # once the supervisor saw it die, the other worker takes every new one
        # while worker 1 backs off and starts again.
        await sup.wait_for(re.compile(r"worker 1 killed by SIGKILL .* restarting in"))
        for _ in range(10):
            async with Client("127.0.0.1", port, protocol=PROTOCOL, catalog=catalog) as c:
                await c.ping(timeout=5)
        restarted = re.compile(rf"^\[worker 1 pid (?!{pids[1]}\])(\d+)\] .*listening on", re.M)
        (match,) = await sup.wait_for(restarted, timeout=STARTUP_TIMEOUT)
        new_pid = int(match.group(1))
        assert new_pid != pids[1] and f"worker 1 started: pid {new_pid}" in sup.text()
        healthcheck = await asyncio.create_subprocess_exec(
            sys.executable, "-m", PACKAGE, "healthcheck", "--port", str(port),
            "--protocol", PROTOCOL, "--metrics-port", str(metrics),
        )  # fmt: skip
        assert await asyncio.wait_for(healthcheck.wait(), 30) == 0
        sup.proc.send_signal(signal.SIGTERM)
        assert await sup.wait_exit(STOP_TIMEOUT) == 0, sup.text()


CRASHING_SUPERVISOR = textwrap.dedent(
    """
    import logging, sys
    from {package}.settings import Settings
    from {package}.sgs.supervisor import Supervisor
    logging.basicConfig(level="INFO", stream=sys.stderr, format="%(message)s")
    settings = Settings(host="127.0.0.1", port=0, workers=2,
                        cluster_url="redis://127.0.0.1:1/0", store_url="memory://")
    crash = ["sh", "-c", "exit 3"]  # fails at once, every time
    supervisor = Supervisor(settings, crash, backoff_initial=0.1, backoff_max=0.4, stable_after=60)
    sys.exit(supervisor.run())
    """
)


async def test_a_worker_crashing_at_start_backs_off_without_a_hot_loop(tmp_path: Path) -> None:
    script = CRASHING_SUPERVISOR.format(package=PACKAGE)
    out = (tmp_path / "crash.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    log_file = tmp_path / "crash.log"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT  # the interpreter may start slowly
        while "worker 1 started" not in log_file.read_text(encoding="utf-8"):
            assert proc.poll() is None and time.monotonic() < deadline, log_file.read_text()
            await asyncio.sleep(0.05)
        await asyncio.sleep(3.0)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(asyncio.to_thread(proc.wait, 20), 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        out.close()
    log = log_file.read_text(encoding="utf-8")
    delays = [
        float(d) for d in re.findall(r"worker 1 exited with code 3 .* restarting in ([\d.]+)s", log)
    ]
    starts = log.count("worker 1 started")
    # 0.1 + 0.2 + 0.4 + 0.4 ... in 3 s: about 9 starts; a hot loop would make hundreds.
    assert 4 <= starts <= 12, log
    assert delays[:4] == [0.1, 0.2, 0.4, 0.4] and max(delays) == 0.4, delays
    # Stopped with its workers down or failing: that is not a clean exit.
    assert code == 1, log
    assert "supervisor stopped: 0 of 2 workers exited 0" in log, log
