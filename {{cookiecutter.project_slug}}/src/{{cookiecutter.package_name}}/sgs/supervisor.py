"""Several server processes on one host, one port: the ``serve --workers N`` supervisor.

One Python process serves on one core. To use more cores of one host, the
supervisor starts N worker processes that all bind the same port with
``SO_REUSEPORT``; the Linux kernel then spreads incoming connections over
them. Each worker is an ordinary server process (its own event loop, its own
``node_id``), so on the game's side the workers are cluster nodes and share
rooms and logins through ``cluster_url``, exactly like servers on different
hosts. The supervisor itself serves nothing: it holds the port, starts the
workers, prefixes their output with the worker's number and pid, restarts
the ones that crash, and stops them all on SIGTERM/SIGINT.

Choices, and why:

* Workers are started by running the same command again (``python -m <package>
  serve``) with every effective setting in the environment, ``workers = 1``
  and ``reuse_port = true``. A fresh interpreter per worker shares no state
  with the supervisor (no forked event loop, no inherited sockets), and the
  environment outranks ``.env`` and the TOML file, so a worker runs with
  exactly the settings the supervisor validated.
* ``port = 0`` is resolved once: the supervisor binds a socket with
  ``SO_REUSEPORT`` on a free port, keeps it bound (never listening, so the
  kernel hands it no connections) and gives that port to every worker. The
  port then stays reserved across worker restarts, and a port another program
  holds is reported before any worker starts.
* A crashed worker (a non-zero exit, a signal, or even exit 0 nobody asked
  for) is restarted after ``backoff_initial * 2**(failures - 1)`` seconds, at
  most ``backoff_max``; a worker that stayed up ``stable_after`` seconds has
  its failure count reset. A worker that fails at every start therefore
  backs off to one attempt per ``backoff_max``, never a hot loop.
* SIGTERM or SIGINT forwards SIGTERM to every worker, each drains as a single
  server does, and the supervisor exits 0 only when every worker exited 0.
  A worker still running ``drain_timeout + stop_margin`` seconds later is
  killed, and the exit code is 1.
* On Linux each worker gets ``PR_SET_PDEATHSIG = SIGTERM``: if the
  supervisor is killed outright, its workers drain and exit instead of
  serving on as orphans.
* A worker whose event loop stops turning (a blocked handler, a deadlock,
  SIGSTOP) does not exit, so its exit cannot tell. Each worker writes a
  heartbeat byte from its loop into a pipe (:mod:`.liveness`); a worker
  silent for ``worker_hang_timeout`` seconds (after its first beat; before
  it, ``startup_timeout``) is killed with SIGKILL and replaced like a crash.
* The supervisor never blocks on its own output: the workers' lines and its
  own log records go through a bounded queue to a writer thread. When the
  log consumer is slow or gone, lines are dropped and counted (a line says
  how many once it can), and the workers' pipes keep being drained, so a
  stuck log reader never stalls a worker.

Linux only: elsewhere ``SO_REUSEPORT`` is missing or does not balance.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import liveness
from .settings import ServerSettings

log = logging.getLogger("sgs.supervisor")

EXIT_OK, EXIT_FAILED = 0, 1
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
READ_CHUNK = 64 * 1024
OUTPUT_QUEUE = 10_000  # lines (or chunks of lines) waiting for a slow log consumer

__all__ = ["Supervisor", "SupervisorError", "reuse_port_supported", "settings_environment"]


class SupervisorError(Exception):
    """A configuration the supervisor refuses before starting anything (a user error)."""


def reuse_port_supported() -> bool:
    """True where SO_REUSEPORT balances connections over the sockets sharing a port."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _env_value(value: Any, dumped: Any) -> str:
    """One setting as an environment variable's text, the way pydantic-settings reads it."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, str):  # raw, so a masked URL (password ***) is never passed on
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(dumped)


def settings_environment(settings: ServerSettings) -> dict[str, str]:
    """Every effective setting as ``<PREFIX><NAME>=value``, except ``node_id``.

    A worker given these variables rebuilds the supervisor's settings whatever
    its ``.env`` and TOML file say (the environment outranks both). ``node_id``
    is left out: each worker process derives its own.
    """
    prefix = str(settings.model_config.get("env_prefix") or "")
    dumped = settings.model_dump(mode="json")
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name == "node_id" or value is None:
            continue
        env[f"{prefix}{name.upper()}"] = _env_value(value, dumped.get(name))
    return env


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when the supervisor dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded before fork, called after
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return preexec


def describe_exit(code: int) -> str:
    """``exited with code 3`` / ``killed by SIGKILL``: for the log."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Worker:
    """One worker slot: the process in it now and its crash history."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    generation: int = 0  # starts so far, restarts included
    failures: int = 0  # consecutive unexpected exits (reset once a run was stable)
    final_code: int | None = None  # exit code during the supervisor's stop
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    beats: int = 0  # heartbeats of the current process
    last_beat: float = 0.0  # loop time of its last heartbeat (or of its start)
    hangs: int = 0  # processes killed because their loop stopped turning


class Supervisor:
    """Run ``workers`` copies of ``command`` on one SO_REUSEPORT port until told to stop.

    ``command`` starts one server process (for the generated CLI:
    ``[sys.executable, "-m", <package>, "serve"]``); it gets the settings
    through the environment (see :func:`settings_environment`).
    """

    def __init__(
        self,
        settings: ServerSettings,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 10.0,
        stop_margin: float = 5.0,
        startup_timeout: float = 60.0,
    ) -> None:
        self.settings = settings
        self.command = list(command)
        self.base_env = dict(os.environ if env is None else env)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.stop_timeout = settings.drain_timeout + stop_margin
        self.port = settings.port
        self.workers = [_Worker(index) for index in range(1, settings.workers + 1)]
        self.hang_timeout = settings.worker_hang_timeout
        self.beat_interval = min(1.0, self.hang_timeout / 5)
        self.startup_timeout = startup_timeout
        self.output = Output()
        self._stopping: asyncio.Event | None = None
        self._preexec = _die_with_parent()

    # -- entry point ----------------------------------------------------------

    def run(self) -> int:
        """Check the platform, reserve the port, supervise until SIGTERM/SIGINT; exit code.

        Raises :class:`SupervisorError` for a platform without SO_REUSEPORT.
        """
        if not reuse_port_supported():
            raise SupervisorError(
                f"workers = {self.settings.workers} needs SO_REUSEPORT, which spreads "
                f"connections over processes only on Linux (this is {sys.platform}); "
                "use workers = 1 and one server per port instead"
            )
        s = self.settings
        try:
            reserved = reserve_port(s.host, s.port)
        except OSError as exc:
            log.error("cannot serve on %s:%s: %s", s.host, s.port, exc)
            return EXIT_FAILED
        with reserved, self.output.logging():
            self.port = reserved.getsockname()[1]
            with asyncio.Runner() as runner:
                return runner.run(self._main())

    # -- supervision ------------------------------------------------------------

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        log.info(
            "supervisor pid %d: %d workers on %s:%d (SO_REUSEPORT)",
            os.getpid(),
            len(self.workers),
            self.settings.host,
            self.port,
        )
        for worker in self.workers:
            worker.task = loop.create_task(self._keep_running(worker))
        await self._stopping.wait()
        return await self._stop_all()

    def _on_signal(self, sig: signal.Signals) -> None:
        assert self._stopping is not None
        if self._stopping.is_set():
            log.info("%s again: still waiting for the workers to drain", sig.name)
        else:
            log.info("%s: stopping %d workers", sig.name, len(self.workers))
        self._stopping.set()
        self._signal_workers(signal.SIGTERM)

    def _signal_workers(self, sig: signal.Signals) -> None:
        for worker in self.workers:
            proc = worker.proc
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    async def _keep_running(self, worker: _Worker) -> None:
        """Start ``worker``, and again after every unexpected exit, with backoff."""
        assert self._stopping is not None
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            try:
                code = await self._run_once(worker)
            except OSError as exc:  # the command cannot even be started
                log.error("worker %d: cannot start %s: %s", worker.index, self.command[0], exc)
                code = EXIT_FAILED
            except Exception:  # never lose a worker slot to a bug here: back off, retry
                log.exception("worker %d: supervising it failed", worker.index)
                code = EXIT_FAILED
            if self._stopping.is_set():
                worker.final_code = code
                return
            if loop.time() - started >= self.stable_after:
                worker.failures = 0
            worker.failures += 1
            delay = min(self.backoff_max, self.backoff_initial * 2 ** (worker.failures - 1))
            log.error(
                "worker %d %s after %.1fs, not asked to stop; restarting in %.1fs (failure %d)",
                worker.index,
                describe_exit(code),
                loop.time() - started,
                delay,
                worker.failures,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_once(self, worker: _Worker) -> int:
        """One run of the worker process: start it, relay its output, watch its heartbeat."""
        worker.generation += 1
        loop = asyncio.get_running_loop()
        beat_read, beat_write = os.pipe()
        env = self.worker_env(worker)
        env[liveness.FD_ENV] = str(beat_write)
        env[liveness.INTERVAL_ENV] = f"{self.beat_interval:g}"
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                preexec_fn=self._preexec,
                pass_fds=(beat_write,),
            )
        except BaseException:
            os.close(beat_read)
            raise
        finally:
            os.close(beat_write)  # the worker holds it now; its exit closes the pipe
        worker.proc = proc
        worker.beats = 0
        worker.last_beat = loop.time()
        os.set_blocking(beat_read, False)
        loop.add_reader(beat_read, self._on_beat, worker, beat_read)
        assert self._stopping is not None
        if self._stopping.is_set():  # the stop came while this one was starting
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        log.info("worker %d started: pid %d", worker.index, proc.pid)
        # JSON lines stay JSON (each names its node); text lines get the worker's name.
        json_logs = self.settings.log_format == "json"
        prefix = "" if json_logs else f"[worker {worker.index} pid {proc.pid}] "
        relays = [
            asyncio.ensure_future(_relay(proc.stdout, self.output, "stdout", prefix)),
            asyncio.ensure_future(_relay(proc.stderr, self.output, "stderr", prefix)),
        ]
        watchdog = asyncio.ensure_future(self._watch(worker, proc))
        try:
            code = await proc.wait()
        finally:
            watchdog.cancel()
            loop.remove_reader(beat_read)
            os.close(beat_read)
        # A grandchild may keep the pipes open: the output is not worth waiting for.
        _done, late = await asyncio.wait(relays, timeout=1.0)
        for task in late:
            task.cancel()
        if self._stopping.is_set():
            log.info("worker %d (pid %d) %s", worker.index, proc.pid, describe_exit(code))
        return code

    def _on_beat(self, worker: _Worker, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker closed its end (exiting): its exit tells the rest
            asyncio.get_running_loop().remove_reader(fd)
            return
        worker.beats += len(data)
        worker.last_beat = asyncio.get_running_loop().time()

    async def _watch(self, worker: _Worker, proc: asyncio.subprocess.Process) -> None:
        """Kill ``proc`` when its event loop stopped turning (no heartbeat in time)."""
        loop = asyncio.get_running_loop()
        assert self._stopping is not None
        while proc.returncode is None:
            await asyncio.sleep(self.beat_interval / 2)
            limit = self.hang_timeout if worker.beats else self.startup_timeout
            silent = loop.time() - worker.last_beat
            if silent <= limit or self._stopping.is_set():
                continue
            worker.hangs += 1
            log.error(
                "worker %d (pid %d) hung: no heartbeat from its event loop for %.1fs "
                "(worker_hang_timeout = %gs); killing it",
                worker.index,
                proc.pid,
                silent,
                self.hang_timeout,
            )
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            return

    def worker_env(self, worker: _Worker) -> dict[str, str]:
        """The environment of one worker process: the settings, one worker, the shared port."""
        s = self.settings
        prefix = str(s.model_config.get("env_prefix") or "")
        env = {**self.base_env, **settings_environment(s)}
        env[f"{prefix}WORKERS"] = "1"
        env[f"{prefix}REUSE_PORT"] = "true"
        env[f"{prefix}PORT"] = str(self.port)
        if s.metrics_port:  # one metrics endpoint per worker: metrics_port + K - 1
            env[f"{prefix}METRICS_PORT"] = str(s.metrics_port + worker.index - 1)
        env["PYTHONUNBUFFERED"] = "1"  # its stdout is a pipe to us: no block buffering
        env.pop(f"{prefix}NODE_ID", None)
        if "node_id" in s.model_fields_set:
            # An explicit id is kept readable but made unique per process: the
            # worker's number, and a restart count so a restarted worker never
            # reuses the identity of the one that crashed.
            suffix = f"-{worker.index}" + (
                f"-r{worker.generation - 1}" if worker.generation > 1 else ""
            )
            env[f"{prefix}NODE_ID"] = s.node_id[: 64 - len(suffix)] + suffix
        return env

    async def _stop_all(self) -> int:
        """Wait for every worker to drain (bounded), kill the stragglers, the exit code."""
        tasks = [w.task for w in self.workers if w.task is not None]
        _done, pending = await asyncio.wait(tasks, timeout=self.stop_timeout)
        if pending:
            log.error(
                "%d workers still running %.1fs after SIGTERM: killing them",
                len(pending),
                self.stop_timeout,
            )
            self._signal_workers(signal.SIGKILL)
            await asyncio.wait(pending, timeout=10.0)
        failed = [w for w in self.workers if w.final_code != 0]
        for worker in failed:
            if worker.final_code is None:
                log.error("worker %d was not running when the stop came", worker.index)
        code = EXIT_FAILED if failed else EXIT_OK
        log.info(
            "supervisor stopped: %d of %d workers exited 0",
            len(self.workers) - len(failed),
            len(self.workers),
        )
        return code


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound with SO_REUSEPORT to ``host:port`` (0: a free port), never listening.

    Binding it proves the port is free for the workers (a program holding it
    without SO_REUSEPORT makes this fail with EADDRINUSE), and holding it keeps
    a port chosen for ``port = 0`` ours while workers come and go. The kernel
    gives connections only to listening sockets, so it takes none.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:  # as asyncio's create_server binds it
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


async def _relay(
    stream: asyncio.StreamReader | None, output: Output, name: str, prefix: str
) -> None:
    """Copy a worker's output line by line, each line prefixed with the worker's name."""
    if stream is None:
        return
    pending = b""
    while True:
        chunk = await stream.read(READ_CHUNK)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        if len(pending) > READ_CHUNK:  # no newline in sight: do not buffer without bound
            lines, pending = [*lines, pending], b""
        _write(output, name, prefix, lines)
    if pending:
        _write(output, name, prefix, [pending])


def _write(output: Output, name: str, prefix: str, lines: list[bytes]) -> None:
    if not lines:
        return
    output.put(name, "".join(f"{prefix}{line.decode(errors='replace')}\n" for line in lines))


class Output:
    """The supervisor's stdout and stderr, written by a thread from a bounded queue.

    ``put`` never blocks: past ``limit`` queued chunks it drops the text and
    counts it, and the next line written says how many were dropped. A log
    consumer that is slow (a full pipe) or gone (EPIPE) therefore never
    stalls the supervisor's loop, which keeps draining the workers' pipes.
    """

    def __init__(self, limit: int = OUTPUT_QUEUE) -> None:
        self.dropped = 0
        self._reported = 0
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue(limit)
        self._thread: threading.Thread | None = None

    def put(self, name: str, text: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sgs-output", daemon=True)
            self._thread.start()
        if self.dropped > self._reported:
            note = f"[supervisor] {self.dropped - self._reported} output line(s) dropped: "
            note += "the log consumer is slow or gone\n"
            try:
                self._queue.put_nowait(("stderr", note))
                self._reported = self.dropped
            except queue.Full:
                pass
        try:
            self._queue.put_nowait((name, text))
        except queue.Full:
            self.dropped += text.count("\n") or 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            name, text = item
            out = sys.stdout if name == "stdout" else sys.stderr
            with contextlib.suppress(OSError, ValueError):  # closed output: keep going
                out.write(text)
                out.flush()

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """Route this process's own log records through the queue while supervising."""
        root = logging.getLogger()
        handler = _QueueHandler(self)
        handler.setFormatter(
            next((h.formatter for h in root.handlers if h.formatter is not None), None)
        )
        saved = root.handlers[:]
        root.handlers = [handler]
        try:
            yield
        finally:
            root.handlers = saved
            thread, self._thread = self._thread, None
            if thread is not None:
                with contextlib.suppress(queue.Full):
                    self._queue.put(None, timeout=1.0)
                thread.join(timeout=2.0)


class _QueueHandler(logging.Handler):
    """A logging handler that hands formatted records to :class:`Output` (never blocks)."""

    def __init__(self, output: Output) -> None:
        super().__init__()
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.output.put("stderr", self.format(record) + "\n")
        except Exception:
            self.handleError(record)
