"""``serve`` as OS processes the nemesis can freeze, kill and restart on the same port.

A node is started on port 0 and its bound port is read back from its own log
line (``listening on 127.0.0.1:<port>``); a restart reuses that port, so
clients and the test find it where it was. ``serve --workers 2`` is a
:class:`Supervised` tree whose worker pids come from the supervisor's log
prefix, so one worker can be hung (SIGSTOP on its pid: its event loop stops
while its socket stays open and the kernel keeps queueing connections to it).
"""

from __future__ import annotations

from pathlib import Path

import testkit
from testkit import ServeProcess, serve_env

START_TIMEOUT = 30.0


class Node(ServeProcess):
    """One ``serve`` process named ``name`` (its node_id), logging to ``<workdir>/<name>.log``,
    with /metrics on a free port; a restart listens on the same game port again."""

    def __init__(self, name: str, workdir: Path, **settings: str) -> None:
        super().__init__(workdir, name=name, metrics=True, node_id=name, **settings)

    def terminate(self) -> None:
        """Clean-up after a test, whatever state the node is in."""
        self.kill()


class Supervised(testkit.Supervised):
    """``serve --workers 2`` in a session of its own, logging to ``<workdir>/<name>.log``."""

    def __init__(self, name: str, workdir: Path, **settings: str) -> None:
        super().__init__(
            ["--workers", "2", "--host", "127.0.0.1", "--port", "0"],
            serve_env({"node_id": name, "metrics_port": "0", **settings}),
            workdir / f"{name}.log",
            cwd=workdir,
        )
        self.name = name

    async def wait_serving(self, count: int = 2, timeout: float = START_TIMEOUT) -> dict[int, int]:
        try:
            return await super().wait_serving(count, timeout)
        except AssertionError as exc:
            raise RuntimeError(f"supervisor {self.name} is not serving: {exc}") from None

    def terminate(self) -> None:
        self.kill_all()


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (exited, or a zombie its parent has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in (b"Z", b"X")
