"""``serve`` as OS processes the nemesis can freeze, kill and restart on the same port.

A node is started on port 0 and its bound port is read back from its own log
line (``listening on 127.0.0.1:<port>``); a restart reuses that port, so
clients and the test find it where it was. ``serve --workers 2`` is a
:class:`Supervised` tree whose worker pids come from the supervisor's log
prefix, so one worker can be hung (SIGSTOP on its pid: its event loop stops
while its socket stays open and the kernel keeps queueing connections to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from testkit import ServeProcess, command, serve_env

START_TIMEOUT = 30.0
SUPERVISOR = re.compile(r"supervisor pid (\d+): (\d+) workers on \S+:(\d+)")
WORKER_LISTENING = re.compile(r"^\[worker (\d+) pid (\d+)\] .*listening on \S+:(\d+)", re.M)


class Node(ServeProcess):
    """One ``serve`` process named ``name`` (its node_id), logging to ``<workdir>/<name>.log``,
    with /metrics on a free port; a restart listens on the same game port again."""

    def __init__(self, name: str, workdir: Path, **settings: str) -> None:
        super().__init__(workdir, name=name, metrics=True, node_id=name, **settings)

    def terminate(self) -> None:
        """Clean-up after a test, whatever state the node is in."""
        self.kill()


class Supervised:
    """``serve --workers 2`` in a session of its own, logging to ``<workdir>/<name>.log``."""

    def __init__(self, name: str, workdir: Path, **settings: str) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            command("serve", "--workers", "2", "--host", "127.0.0.1", "--port", "0"),
            cwd=workdir,
            env=serve_env({"node_id": name, "metrics_port": "0", **settings}),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: terminate() kills it whole
        )  # fmt: skip
        self.port = 0

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def workers(self) -> dict[int, int]:
        """{worker index: pid} of the newest worker of each index that listens."""
        found: dict[int, int] = {}
        for match in WORKER_LISTENING.finditer(self.text()):
            found[int(match.group(1))] = int(match.group(2))
        return found

    async def wait_serving(self, count: int = 2) -> dict[int, int]:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            head = SUPERVISOR.search(self.text())
            workers = self.workers()
            if head and len(workers) >= count:
                self.port = int(head.group(3))
                return workers
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"supervisor {self.name} is not serving:\n{self.text()}")
            await asyncio.sleep(0.05)

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._out.close()


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (exited, or a zombie its parent has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in (b"Z", b"X")
