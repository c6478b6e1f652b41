"""What the orchestrator hands a load process: precomputed bytes and a schedule.

Every request frame and every expected reply frame is built once, before the
clock starts, by the server's own encoding (see ``workloads.py``); the hot
loop only compares bytes. A job is pickled to a file and read by
``python -m benchmarks.loadgen JOBFILE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One request and what must come back for it.

    ``expected`` is the whole reply frame; None means the reply carries a
    value the client cannot predict (a server timestamp, a member list), so
    only its id is checked.
    """

    request: bytes
    expected: bytes | None
    expected_id: int


@dataclass
class ReqRepJob:
    """Connections that pipeline requests to ``depth`` and verify each reply in order.

    Connection ``i`` first sends ``prefixes[i]`` (a login, say) and then
    ``cycle`` over and over.
    """

    prefixes: list[list[Step]]
    cycle: list[Step]
    depth: int


@dataclass
class Member:
    """One room member: how it logs in and joins, and what it says."""

    index: int
    setup: list[Step]
    say: bytes
    node: int = 0  # which of ``LoadJob.ports`` it connects to (cluster fan-out)


@dataclass
class RoomJob:
    """Members of one room; ``deliveries`` maps every valid RoomMessage frame to its sender.

    ``rate`` is SayReqs per second per member; None floods: each member keeps
    ``depth`` SayReqs outstanding, its own copy of the RoomMessage acting as the ack.
    """

    members: list[Member]
    deliveries: dict[bytes, int]
    room_size: int
    rate: float | None
    depth: int
    ignore_ids: frozenset[int] = frozenset()


@dataclass
class IdleJob:
    """Open ``count`` connections, ping each once, hold them, ping each again."""

    count: int
    ping: Step
    concurrency: int = 256
    timeout: float = 30.0


@dataclass
class LoadJob:
    """Where to connect and for how long; ``work`` says what to do."""

    host: str
    port: int
    warmup: float
    duration: float
    work: ReqRepJob | RoomJob | IdleJob
    drain_timeout: float = 5.0
    nofile: int = 16384
    ports: tuple[int, ...] = ()  # several server nodes: members pick theirs by ``Member.node``
    extra: dict[str, object] = field(default_factory=dict)
