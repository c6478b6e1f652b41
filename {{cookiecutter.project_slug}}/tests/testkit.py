"""What every test module shares: a free port, polling, and ``serve`` as a process.

``serve`` runs on port 0 and its bound port is read back from its own log
line (``listening on 127.0.0.1:<port>``): picking a free port first and then
starting the server races every other process on the machine for it. The
log goes to a file, not a pipe, so a server nobody reads (or one a test has
frozen with SIGSTOP) never blocks on a full pipe, and a restart appends to
the same file on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }}.settings import ENV_PREFIX

PACKAGE = "{{ cookiecutter.package_name }}"
START_TIMEOUT = 30.0
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
WS_LISTENING = re.compile(r"WebSocket on 127\.0\.0\.1:(\d+)/")
METRICS = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")
SUPERVISOR = re.compile(r"supervisor pid (\d+): (\d+) workers on \S+:(\d+)")
WORKER_LISTENING = re.compile(r"^\[worker (\d+) pid (\d+)\] .*listening on \S+:(\d+)", re.M)


def free_port() -> int:
    """A port nothing listens on right now, for what cannot bind port 0 and report it
    (redis-server, ``ws_port`` and ``metrics_port``, whose 0 means off). Another
    process may take it before it is used: callers that can, retry."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_pair() -> int:
    """A port P with P + 1 free too: ``metrics_port`` for two workers (P + K - 1 each).
    The same race as :func:`free_port`, on two ports instead of one."""
    for _ in range(100):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


async def until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``condition`` every 10 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what or condition}")
        await asyncio.sleep(0.01)


def until_sync(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> None:
    """:func:`until` for tests without an event loop (polls every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what or condition}")
        time.sleep(0.05)


def command(*args: str) -> list[str]:
    """This project's command line: ``python -m <package> <args>``."""
    return [sys.executable, "-m", PACKAGE, *args]


def serve_env(
    settings: dict[str, str | None], base: dict[str, str] | None = None
) -> dict[str, str]:
    """This environment without any of the server's settings, plus ``settings``.

    The tests' clients speak json whatever the project's default codec is,
    and there is no WebSocket or metrics port unless asked for (``ws_port``,
    ``metrics_port`` or the ``--metrics-port`` flag); a setting given as None
    is left to the project's default.
    """
    env = {k: v for k, v in (base or os.environ).items() if not k.startswith(ENV_PREFIX)}
    chosen = {"protocol": "json", "ws_port": "0", "metrics_port": "0", **settings}
    env.update({f"{ENV_PREFIX}{k.upper()}": v for k, v in chosen.items() if v is not None})
    return env


class ServeProcess:
    """``serve --host 127.0.0.1 --port 0 <flags>`` in ``workdir``, logging to ``<name>.log``.

    ``await start()`` returns once the log says where it listens (and, with
    ``metrics = True``, where /metrics is: a free port tried up to five
    times). A restart listens on the same port again.
    """

    def __init__(
        self,
        workdir: Path,
        *flags: str,
        name: str = "serve",
        metrics: bool = False,
        env: dict[str, str] | None = None,
        **settings: str | None,
    ) -> None:
        self.workdir = workdir
        self.flags = flags
        self.name = name
        self.metrics = metrics
        self.env = serve_env(settings, env)
        self.log = workdir / f"{name}.log"
        self.port = 0
        self.ws_port = 0
        self.metrics_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False  # SIGSTOPped right now
        self._offset = 0

    async def start(self, timeout: float = START_TIMEOUT) -> ServeProcess:
        """Start (or restart on the same port) and wait until it listens."""
        for _ in range(5):
            metrics = ["--metrics-port", str(free_port())] if self.metrics else []
            self._offset = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(
                    command("serve", "--host", "127.0.0.1", "--port", str(self.port), *metrics,
                            *self.flags),
                    cwd=self.workdir,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            self.stopped = False
            if await self._listening(timeout):
                return self
        raise AssertionError(f"{self.name} never listened:\n{self.text()[-4000:]}")

    def start_blocking(self, timeout: float = START_TIMEOUT) -> ServeProcess:
        """:meth:`start` for a test without an event loop."""
        return asyncio.run(self.start(timeout))

    async def _listening(self, timeout: float) -> bool:
        """True once the log shows the ports; False when the process ended (a taken port)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text(self._offset)
            listening, metrics = LISTENING.search(text), METRICS.search(text)
            if listening and (metrics or not self.metrics):
                self.port = int(listening.group(1))
                self.metrics_port = int(metrics.group(1)) if metrics else 0
                ws = WS_LISTENING.search(text)
                self.ws_port = int(ws.group(1)) if ws else 0
                return True
            if self.proc.poll() is not None:
                if self.metrics:
                    return False  # the metrics port was taken meanwhile: try another
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{text}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} did not listen in {timeout:g}s:\n{self.text()}")

    def logged_port(self) -> int:
        """The port this run's log says it listens on, 0 before that line (any thread)."""
        found = LISTENING.search(self.text(self._offset))
        return int(found.group(1)) if found else 0

    def text(self, offset: int = 0) -> str:
        """The log from ``offset`` on (all runs of this process, appended)."""
        with contextlib.suppress(FileNotFoundError), self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")
        return ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str]:
        """Send ``sig`` and wait for the exit: (exit code, this run's log)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        return code, self.text(self._offset)

    async def stopped_by(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
        """:meth:`stop` without blocking the event loop (the test's own server keeps serving)."""
        return await asyncio.to_thread(self.stop, sig)

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
        """SIGKILL (after SIGCONT, should it be frozen): gone without a word."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stopped = False


class Supervised:
    """A ``serve <args>`` process tree (``--workers N``) in a session of its own, logging to ``log``.

    The supervisor prefixes each worker's lines with ``[worker K pid P]``, so the
    worker pids (to hang one with SIGSTOP, or to see who served whom) and the
    shared port come from the log; :meth:`kill_all` kills the whole group.
    """

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> None:
        self.log = log
        self.port = 0
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            command("serve", *args),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # one process group: kill_all() kills it whole
        )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def wait_for(
        self, pattern: re.Pattern[str], count: int = 1, timeout: float = 20.0
    ) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the log, waiting at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = list(pattern.finditer(self.text()))
            if len(found) >= count:
                return found[:count]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {count} x {pattern.pattern!r} in {timeout}s:\n{self.text()}"
                )
            if self.proc.poll() is not None and len(list(pattern.finditer(self.text()))) < count:
                raise AssertionError(f"supervisor exited {self.proc.returncode}:\n{self.text()}")
            await asyncio.sleep(0.05)

    def workers(self) -> dict[int, int]:
        """{worker index: pid} of the newest worker of each index that listens."""
        found: dict[int, int] = {}
        for match in WORKER_LISTENING.finditer(self.text()):
            found[int(match.group(1))] = int(match.group(2))
        return found

    async def wait_serving(self, count: int = 2, timeout: float = START_TIMEOUT) -> dict[int, int]:
        """{worker index: pid} once ``count`` workers listen; sets :attr:`port`."""
        (head,) = await self.wait_for(SUPERVISOR, timeout=timeout)
        self.port = int(head.group(3))
        await self.wait_for(WORKER_LISTENING, count=count, timeout=timeout)
        return self.workers()

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"supervisor still running after {timeout}s:\n{self.text()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill_all(self) -> None:
        """SIGCONT (a worker may be frozen), then SIGKILL to the whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._out.close()
