"""`serve --workers N`: a hung worker is replaced; a stuck log reader blocks nobody.

Real processes throughout: the supervisor is started as a user starts it,
a worker is hung with SIGSTOP (its event loop stops turning, the process does
not exit), and the slow log consumer is a pipe this test never reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redis_server import RedisServer
from test_workers import PROTOCOL, STARTUP_TIMEOUT, STOP_TIMEOUT, supervised, wait_serving

from {{ cookiecutter.package_name }}.messages import (
    catalog,
)
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
)
from {{ cookiecutter.package_name }}.sgs import (
    Client,
)
from {{ cookiecutter.package_name }}.sgs.supervisor import (
    reuse_port_supported,
)

PACKAGE = "{{ cookiecutter.package_name }}"
HANG = 2.0
LINKS = 1500
F_SETPIPE_SZ = 1031  # from <linux/fcntl.h>

pytestmark = [
    pytest.mark.usefixtures("isolated"),
    pytest.mark.skipif(not reuse_port_supported(), reason="SO_REUSEPORT balancing is Linux-only"),
]


async def test_a_hung_worker_is_killed_and_replaced_within_its_hang_timeout(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    args = ["--workers", "2", "--host", "127.0.0.1", "--port", "0", "--protocol", PROTOCOL]
    with supervised(
        args,
        tmp_path / "serve.log",
        cluster_url=redis_server.url,
        store_url="memory://",
        worker_hang_timeout=str(HANG),
        metrics_port="0",  # no fixed port shared with tests running beside this one
    ) as sup:
        port, pids = await wait_serving(sup)
        os.kill(pids[1], signal.SIGSTOP)  # the loop stops turning; the process lives
        stopped = time.monotonic()
        await sup.wait_for(re.compile(rf"worker 1 \(pid {pids[1]}\) hung: no heartbeat"))
        assert time.monotonic() - stopped < HANG + 3.0, "noticed within the hang timeout"
        await sup.wait_for(re.compile(r"worker 1 killed by SIGKILL .* restarting in"))
        restarted = re.compile(rf"^\[worker 1 pid (?!{pids[1]}\])(\d+)\] .*listening on", re.M)
        await sup.wait_for(restarted, timeout=STARTUP_TIMEOUT)
        for _ in range(10):
            async with Client("127.0.0.1", port, protocol=PROTOCOL, catalog=catalog) as c:
                await c.ping(timeout=5)
        sup.proc.send_signal(signal.SIGTERM)
        # The hung worker was replaced, so the stop is clean.
        assert await sup.wait_exit(STOP_TIMEOUT) == 0, sup.text()


async def test_a_log_consumer_that_never_reads_does_not_block_the_workers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        f"{ENV_PREFIX}CLUSTER_URL": redis_server.url,
        f"{ENV_PREFIX}STORE_URL": "memory://",
        f"{ENV_PREFIX}METRICS_PORT": "0",  # no fixed port shared with tests beside this one
    }
    args = ["--workers", "2", "--host", "127.0.0.1", "--port", "0", "--protocol", PROTOCOL]
    # Every accepted link logs at DEBUG: LINKS of them write far more than the
    # pipes between a worker and the supervisor hold (64 KiB each).
    proc = subprocess.Popen(
        [sys.executable, "-m", PACKAGE, "serve", *args, "--log-level", "DEBUG"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        port = await _port_from_pipe(proc)
        # From here on nobody reads the supervisor's output, and its pipe is
        # made as small as Linux allows: it is full after a few lines.
        assert proc.stdout is not None
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 4096)
        started = time.monotonic()
        for k in range(LINKS):
            async with Client("127.0.0.1", port, protocol=PROTOCOL, catalog=catalog) as c:
                await c.ping(timeout=10)
            assert time.monotonic() - started < 120, f"stalled after {k} links"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


async def _port_from_pipe(proc: subprocess.Popen[bytes]) -> int:
    """Read the supervisor's output until both workers listen; the shared port."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    text = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while text.count(b"listening on") < 2:
        assert proc.poll() is None and time.monotonic() < deadline, text.decode(errors="replace")
        with contextlib.suppress(BlockingIOError):
            text += os.read(fd, 65536)
        await asyncio.sleep(0.05)
    match = re.search(rb"supervisor pid \d+: \d+ workers on \S+:(\d+)", text)
    assert match, text
    return int(match.group(1))
