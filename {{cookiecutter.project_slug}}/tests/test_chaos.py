"""The fault-injection suite: its checkers on hand-written histories, then a short real run.

The checkers are tested first on histories written by hand, each with one
known violation (and a clean twin), so a run that reports no violation means
the cluster held, not that a checker was blind. Then a fixed-seed schedule
runs against real nodes and a real redis-server; ``make chaos SEEDS=N`` runs
more of them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import uvloop

from chaos.checkers import Bounds, check
from chaos.history import CLOSED, ERROR, OK, History, Op
from chaos.run import Config, run, summary

BOUNDS = Bounds(lease=3.0, timeout=2.0, slack=1.0)  # grace: 6 s
LOST_ONE = {"acked_state": 1}

#: The short tier: the faults behind the five known failures, a partition, a deaf subscriber, a crash.
SHORT_KINDS = (
    "lost_kick",
    "pause_node_long",
    "broker_pause_long",
    "broker_restart",
    "blackhole",
    "deaf_subscriber",
    "kill_node",
)
#: The write-behind tier: what may (a crash, a pause past the lease) and may not lose a flush
#: (a short pause, a broker pause, the store's and the bus's connections killed under it).
WRITE_BEHIND_KINDS = ("pause_node_long", "kill_node", "pause_node_short", "broker_pause_long",
                      "kill_normal")  # fmt: skip


def op(kind: str, t0: float, t1: float | None, outcome: str = OK, value: object = None,
       **fields: object) -> Op:  # fmt: skip
    return Op(kind=kind, invoked=t0, completed=t1, outcome=outcome, value=value, **fields)  # type: ignore[arg-type]


def violations(*ops: Op, bounds: Bounds = BOUNDS) -> dict[str, int]:
    found = check(History(ops=list(ops), started=0.0), bounds)
    return {name: len(v) for name, v in found.items() if v}


def login(link: int, node: str, t0: float, t1: float, counter: int, kind: str = "login") -> Op:
    return op(kind, t0, t1, OK, counter, link=link, node=node, account="alice")


def biz(link: int, t0: float, t1: float, outcome: str = OK, value: object = None) -> Op:
    return op("business", t0, t1, outcome, value, link=link, node="?", account="alice")


def test_one_owner_flags_an_old_link_that_still_serves() -> None:
    takeover = [login(1, "a", 0, 0.1, 0), login(2, "b", 1, 1.2, 0)]
    told = op("notice", 1.5, 1.5, OK, "replaced", link=1, account="alice")
    assert violations(*takeover, told, biz(1, 3, 3.1), biz(2, 8, 8.1)) == {}
    assert violations(*takeover, told, biz(1, 8, 8.1), biz(2, 8, 8.1)) == {"one_owner": 1}
    # Never told, and still open at the end: a silent second owner.
    assert violations(*takeover, biz(2, 8, 8.1)) == {"one_owner": 1}
    closed = op("closed", 2, 2, OK, "server", link=1, account="alice")
    assert violations(*takeover, closed, biz(1, 8, 8.1, CLOSED)) == {}


def test_state_checkers_flag_lost_resurrected_and_phantom_counts() -> None:
    history = [login(1, "a", 0, 0.1, 0), biz(1, 1, 1.1), biz(1, 2, 2.1), biz(1, 3, 3.1, ERROR)]
    history.append(op("closed", 3.5, 3.5, OK, "client", link=1, account="alice"))
    assert violations(*history, login(2, "b", 4, 4.1, 2, "final_login")) == {}
    assert violations(*history, login(2, "b", 4, 4.1, 1, "final_login")) == {"acked_state": 1}
    assert violations(*history, login(2, "b", 4, 4.1, 1)) == {"resurrection": 1}
    # The unacknowledged third request may have happened; a fourth never was sent.
    assert violations(*history, login(2, "b", 4, 4.1, 3)) == {}
    assert violations(*history, login(2, "b", 4, 4.1, 4)) == {"acked_state": 1}


def test_write_behind_excuses_only_a_crashs_last_flush_interval() -> None:
    """Write-behind may lose what its node acknowledged within a flush interval before it died."""
    write_behind = Bounds(lease=3.0, timeout=2.0, slack=1.0, flush=1.0)

    def on_a(t0: float, t1: float) -> Op:
        return op("business", t0, t1, OK, link=1, node="a", account="alice")

    played = [login(1, "a", 0, 0.1, 0), on_a(1, 1.1), on_a(9.5, 9.6)]
    closed = op("closed", 10.2, 10.2, OK, "server", link=1, account="alice")
    final = login(2, "b", 20, 20.1, 1, "final_login")
    for kind in ("kill_node", "pause_node_long"):
        crash = op("fault", 10, 14, OK, {"kind": kind}, node="a")
        assert violations(*played, crash, closed, final, bounds=write_behind) == {}
        # store_sync = "always" loses nothing, crash or not.
        assert violations(*played, crash, closed, final) == LOST_ONE
        # The update acknowledged 9 s before the crash was flushed long before it.
        lost_old = login(2, "b", 20, 20.1, 0, "final_login")
        assert violations(*played, crash, closed, lost_old, bounds=write_behind) == LOST_ONE
    # A pause within the lease, a broker pause, a crash of another node: nothing may go.
    for fault in (op("fault", 10, 11.5, OK, {"kind": "pause_node_short"}, node="a"),
                  op("fault", 10, 15, OK, {"kind": "broker_pause_long"}, node="a"),
                  op("fault", 10, 11, OK, {"kind": "kill_node"}, node="b")):  # fmt: skip
        assert violations(*played, fault, closed, final, bounds=write_behind) == LOST_ONE
    # Cut off from Redis past the lease: also what it acknowledged while its lease could hold.
    cut = op("fault", 9, 14, OK, {"kind": "blackhole", "seconds": 5.0, "blackhole": True},
             node="a")  # fmt: skip
    later = [*played, on_a(10.5, 10.6)]
    assert violations(*later, cut, closed, final, bounds=write_behind) == {}
    deaf = op("fault", 9, 14, OK, {"kind": "deaf_subscriber", "seconds": 5.0, "blackhole": True,
              "subscribers_only": True}, node="a")  # fmt: skip
    assert violations(*later, deaf, closed, final, bounds=write_behind) == LOST_ONE


def test_broker_data_loss_excuses_only_accounts_nobody_held() -> None:
    history = [login(1, "a", 0, 0.1, 0), biz(1, 1, 1.1), biz(1, 2, 2.1)]
    restart = op("fault", 5, 5.5, OK, {"kind": "broker_restart", "restart": True}, node="a")
    # alice online on link 1 through the restart: her two updates must come back.
    moved = [login(2, "b", 9, 9.1, 0), op("closed", 9.5, 9.5, OK, "client", link=1)]
    assert violations(*history, restart, *moved) == {"broker_data_loss": 1}
    moved[0] = login(2, "b", 9, 9.1, 2)
    assert violations(*history, restart, *moved) == {}
    # Lost after a login that came after the restart: not the broker's doing.
    later = [login(2, "b", 9, 9.1, 2), op("closed", 9.5, 9.5, OK, "client", link=1),
             biz(2, 10, 10.1), login(3, "a", 11, 11.1, 2),
             op("closed", 11.5, 11.5, OK, "client", link=2)]  # fmt: skip
    assert violations(*history, restart, *later) == {"resurrection": 1}
    # alice logged out before it: only the broker had her state; starting over is right.
    logout = op("closed", 3, 3, OK, "client", link=1, account="alice")
    assert violations(*history, logout, restart, login(2, "b", 9, 9.1, 0)) == {}


def test_convergence_deaf_node_and_workers_checkers() -> None:
    ghost = {"room": "x", "expected": ["bob"], "members": ["alice", "bob"]}
    assert violations(op("members", 1, 2, OK, ghost, node="b")) == {"convergence": 1}
    deaf = {"room": "x", "from": "a", "to": "b", "heard": False}
    assert violations(op("hear", 1, 6, OK, deaf, node="b")) == {"convergence": 1}
    cut = op("fault", 10, 17, OK, {"kind": "blackhole", "seconds": 7.0, "blackhole": True},
             node="a")  # fmt: skip
    green = [op("readyz", t, t, OK, True, node="a") for t in range(8, 40)]
    assert violations(cut, *green) == {"deaf_node": 1}
    noticed = [op("readyz", t, t, OK, t not in (13, 14, 15), node="a") for t in range(8, 40)]
    assert violations(cut, *noticed) == {}
    stuck = [op("readyz", t, t, OK, t < 10, node="a") for t in range(8, 40)]
    assert violations(cut, *stuck) == {"deaf_node": 1}
    hung = {"kind": "hang_worker", "worker": 1, "pid": 7, "waited": 15.0}
    assert violations(op("fault", 1, 16, OK, {**hung, "replaced_after": None})) == {"workers": 1}
    assert violations(op("fault", 1, 5, OK, {**hung, "replaced_after": 3.5})) == {}


@pytest.mark.timeout(600)
def test_a_short_fixed_seed_schedule_breaks_no_invariant(tmp_path: Path) -> None:
    """Seed 1, the known failures' faults once each, on two nodes: every checker must find nothing."""
    config = Config(seed=1, workdir=tmp_path, faults=len(SHORT_KINDS), kinds=SHORT_KINDS)
    short_run(config, len(SHORT_KINDS))


@pytest.mark.timeout(400)
def test_a_short_write_behind_schedule_loses_only_what_a_crash_may(tmp_path: Path) -> None:
    """Seed 2, write-behind: the owner stopped or killed, the broker paused, its clients killed."""
    config = Config(seed=2, workdir=tmp_path, faults=len(WRITE_BEHIND_KINDS),
                    kinds=WRITE_BEHIND_KINDS, store_sync="write_behind")  # fmt: skip
    short_run(config, len(WRITE_BEHIND_KINDS))


def short_run(config: Config, faults: int) -> None:
    started = time.monotonic()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(asyncio.wait_for(run(config), 480))
    print(f"{time.monotonic() - started:.0f}s\n{summary([result])}")
    assert result.counts["faults"] == faults
    assert result.counts["acked_writes"] > 0, "the players did nothing: the run proves nothing"
    assert result.ok, summary([result])
