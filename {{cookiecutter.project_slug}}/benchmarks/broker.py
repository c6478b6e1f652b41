"""A throwaway ``redis-server`` for the cluster cases: started per case, persistence off.

The benchmark starts its own broker on a free 127.0.0.1 port (``--save ''
--appendonly no``), so a cluster case needs nothing running beforehand and no
state leaks between cases. Where no ``redis-server`` binary exists the cluster
cases are skipped with a note saying so (the rest of the run is unaffected).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from pathlib import Path

from .limits import cpu_seconds

MISSING = "no redis-server binary on PATH (Debian: apt-get install redis-server)"


def binary() -> str | None:
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """One ``redis-server`` process on 127.0.0.1, optionally pinned with ``taskset``."""

    def __init__(self, cpus: str | None) -> None:
        self.cpus = cpus
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid) if self.proc is not None else None

    async def start(self, timeout: float = 10.0) -> Broker:
        path = binary()
        if path is None:
            raise LookupError(MISSING)
        args = [
            path,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        prefix = ["taskset", "-c", self.cpus] if self.cpus else []
        self.proc = await asyncio.create_subprocess_exec(
            *prefix,
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await self._answers():
            if self.proc.returncode is not None:
                raise RuntimeError(f"redis-server exited: {self.log_tail()}")
            if loop.time() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} never answered PING")
            await asyncio.sleep(0.02)
        return self

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), 0.5
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"PING\r\n")
            return (await asyncio.wait_for(reader.readline(), 0.5)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
