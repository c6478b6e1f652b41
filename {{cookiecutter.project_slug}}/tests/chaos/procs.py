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
import sys
import time
from pathlib import Path

from redis_server import free_port

from {{ cookiecutter.package_name }}.settings import ENV_PREFIX

PACKAGE = "{{ cookiecutter.package_name }}"
START_TIMEOUT = 30.0
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
METRICS = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")
SUPERVISOR = re.compile(r"supervisor pid (\d+): (\d+) workers on \S+:(\d+)")
WORKER_LISTENING = re.compile(r"^\[worker (\d+) pid (\d+)\] .*listening on \S+:(\d+)", re.M)


def serve_env(settings: dict[str, str]) -> dict[str, str]:
    """This environment without any of the server's settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    # The harness speaks json whatever the project's default codec is; no
    # WebSocket port (port + 1 may be someone's ephemeral port).
    env.update({f"{ENV_PREFIX}PROTOCOL": "json", f"{ENV_PREFIX}WS_PORT": "0"})
    env.update({f"{ENV_PREFIX}{k.upper()}": v for k, v in settings.items()})
    return env


class Node:
    """One ``serve`` process named ``name`` (its node_id), logging to ``<workdir>/<name>.log``."""

    def __init__(self, name: str, workdir: Path, **settings: str) -> None:
        self.name = name
        self.workdir = workdir
        self.settings = {"node_id": name, **settings}
        self.log = workdir / f"{name}.log"
        self.port = 0
        self.metrics_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False  # SIGSTOPped right now

    async def start(self) -> Node:
        """Start (or restart on the same port) and wait until it listens; retries a taken port."""
        for _ in range(5):
            metrics = free_port()
            offset = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", PACKAGE, "serve", "--host", "127.0.0.1",
                     "--port", str(self.port), "--metrics-port", str(metrics)],
                    cwd=self.workdir,
                    env=serve_env(self.settings),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            self.stopped = False
            port = await self._read_port(offset)
            if port is not None:
                self.port, self.metrics_port = port, metrics
                return self
        raise RuntimeError(f"node {self.name} never listened:\n{self.text()[-4000:]}")

    async def _read_port(self, offset: int) -> int | None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.text(offset)
            listening, metrics = LISTENING.search(text), METRICS.search(text)
            if listening and metrics:
                return int(listening.group(1))
            if self.proc.poll() is not None:
                return None  # a port was taken meanwhile: the caller tries again
            await asyncio.sleep(0.05)
        raise RuntimeError(f"node {self.name} did not listen in {START_TIMEOUT}s")

    def text(self, offset: int = 0) -> str:
        with contextlib.suppress(FileNotFoundError), self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")
        return ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and its memory, and answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def kill(self) -> None:
        """SIGKILL: gone without a word; only its lease tells the cluster."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stopped = False

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
            [sys.executable, "-m", PACKAGE, "serve", "--workers", "2", "--host", "127.0.0.1",
             "--port", "0"],
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
