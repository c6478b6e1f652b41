"""The benchmark scenarios, and the knobs that scale them down for quick runs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Kind = Literal["reqrep", "room", "idle"]


@dataclass(frozen=True)
class Scenario:
    """One load shape. ``flow`` picks the requests of a request/reply scenario."""

    name: str
    kind: Kind
    what: str
    flow: str = "echo"
    conns: int = 1
    depth: int = 1
    same_core: bool = False
    rate: float | None = None
    #: framework-only scenarios that compare server variants side by side in one run
    #: ("" = the plain server, "cluster", "2nodes", "sqlite", "sqlite_always", "limits",
    #: "ws", "metrics", "resume_off", "resume_on"; see runner.VARIANTS)
    variants: tuple[str, ...] = ()
    #: framework variants run once more beside the usual sweep (baselines, every model),
    #: on shared_all (or the app's model) and json: "limits" for the idle memory target
    also: tuple[str, ...] = ()

    def scaled(self, conns: int | None = None, depth: int | None = None) -> Scenario:
        return replace(self, conns=conns or self.conns, depth=depth or self.depth)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "echo_latency",
            "reqrep",
            "echo 64 B, 1 conn, depth 1, server and load on separate cores",
        ),
        Scenario(
            "echo_latency_samecore",
            "reqrep",
            "echo 64 B, 1 conn, depth 1, server and load on the same core",
            same_core=True,
        ),
        Scenario("echo_throughput", "reqrep", "echo 64 B, 50 conns, depth 8", conns=50, depth=8),
        Scenario(
            "login_business",
            "reqrep",
            "robot flow: login, then BusinessReq (pipelined, depth 8), 50 conns",
            flow="login_business",
            conns=50,
            depth=8,
        ),
        Scenario(
            "room",
            "room",
            "200 members in one room, 1 SayReq/s each (paced); deliveries/s",
            conns=200,
            rate=1.0,
        ),
        Scenario(
            "room_flood",
            "room",
            "200 members in one room, each keeps 1 SayReq outstanding (capacity); deliveries/s",
            conns=200,
            depth=1,
        ),
        Scenario(
            "cluster_echo",
            "reqrep",
            "echo 64 B, 50 conns, depth 8: cluster node (Redis) vs no cluster_url, all members local",
            conns=50,
            depth=8,
            variants=("", "cluster"),
        ),
        Scenario(
            "cluster_business",
            "reqrep",
            "login, then BusinessReq (depth 8), 50 conns: cluster node vs no cluster_url",
            flow="login_business",
            conns=50,
            depth=8,
            variants=("", "cluster"),
        ),
        Scenario(
            "cluster_room_flood",
            "room",
            "room_flood with the 200 members split over 2 cluster nodes (one Redis) "
            "vs one node; deliveries/s",
            conns=200,
            depth=1,
            variants=("", "2nodes"),
        ),
        Scenario(
            "limits_echo",
            "reqrep",
            "echo 64 B, 50 conns, depth 8: every hostile-client limit on (set not to bite) vs off",
            conns=50,
            depth=8,
            variants=("", "limits"),
        ),
        Scenario(
            "ws_echo",
            "reqrep",
            "echo 64 B, 50 conns, depth 8: WebSocket (TLV in binary messages) vs TCP",
            conns=50,
            depth=8,
            variants=("", "ws"),
        ),
        Scenario(
            "store_business",
            "reqrep",
            "login, then BusinessReq (depth 8), 50 conns: sqlite store (write-behind, "
            "then store_sync=always) vs memory://",
            flow="login_business",
            conns=50,
            depth=8,
            variants=("", "sqlite", "sqlite_always"),
        ),
        Scenario(
            "metrics_echo",
            "reqrep",
            "echo 64 B, 50 conns, depth 8: metrics_port set (every message timed into the "
            "handler histogram) vs metrics_port = 0",
            conns=50,
            depth=8,
            variants=("", "metrics"),
        ),
        Scenario(
            "resume_echo",
            "reqrep",
            "log in, then echo 64 B, 50 conns, depth 8: every link armed for session "
            "resumption (ResumeReq after the login; every frame numbered and kept) vs "
            "resume_window = 0",
            flow="login_echo",
            conns=50,
            depth=8,
            variants=("resume_off", "resume_on"),
        ),
        Scenario(
            "resume_business",
            "reqrep",
            "login, then BusinessReq (depth 8), 50 conns: armed for resumption vs resume_window = 0",
            flow="login_business",
            conns=50,
            depth=8,
            variants=("resume_off", "resume_on"),
        ),
        Scenario(
            "idle",
            "idle",
            "10,000 idle connections: RSS per connection, then all pinged; with every "
            "hostile-client limit on (never biting) beside no limits",
            conns=10_000,
            also=("limits",),
        ),
    )
}

#: What each non-JSON protocol is measured on (the protocol target is about echo throughput).
PROTOCOL_SCENARIOS = ("echo_throughput",)
