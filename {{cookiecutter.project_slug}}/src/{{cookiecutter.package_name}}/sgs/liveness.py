"""A worker's liveness heartbeat to its supervisor: proof that its event loop turns.

``serve --workers N`` hands each worker the write end of a pipe (its file
descriptor in ``SGS_LIVENESS_FD``, the beat interval in
``SGS_LIVENESS_INTERVAL``). A timer on the worker's own event loop writes one
byte per interval, so the beats stop exactly when the loop stops turning: a
handler that blocks, a deadlock, a SIGSTOP. A crashed process is seen by its
exit; a hung one only this way. The write never blocks the worker: the pipe
is non-blocking and a full pipe (the supervisor is behind) skips a beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

FD_ENV = "SGS_LIVENESS_FD"
INTERVAL_ENV = "SGS_LIVENESS_INTERVAL"


class Heartbeat:
    """Writes one byte to ``fd`` every ``interval`` seconds from the running loop."""

    def __init__(self, fd: int, interval: float) -> None:
        self.fd = fd
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None
        os.set_blocking(fd, False)

    def start(self) -> None:
        self._beat()

    def _beat(self) -> None:
        try:
            os.write(self.fd, b".")
        except BlockingIOError:
            pass  # the supervisor reads behind: it has beats enough
        except OSError:
            return  # the supervisor is gone: nobody to tell
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._beat)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        with contextlib.suppress(OSError):
            os.close(self.fd)


def from_environment() -> Heartbeat | None:
    """The heartbeat a supervisor asked for, or None (not a supervised worker)."""
    fd = os.environ.pop(FD_ENV, "")
    if not fd.isdigit():
        return None
    try:
        interval = float(os.environ.pop(INTERVAL_ENV, "1.0"))
        return Heartbeat(int(fd), interval)
    except (OSError, ValueError):
        return None
