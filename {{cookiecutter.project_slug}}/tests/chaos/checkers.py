"""Checkers: each reads a history and lists the violations of one invariant of the cluster.

Times are the history's (seconds since the run began). ``grace`` is what the
invariants allow a cluster to take: one ``cluster_lease`` plus one
``cluster_timeout``, plus ``slack`` for a loaded test machine.

- ``one_owner``: once a login is acknowledged, no other link of the account
  serves a request invoked more than ``grace`` later; a link that lost its
  account learns it (``Error(replaced)`` or a close from the server).
- ``acked_state``: the final login of each account sees every acknowledged
  business request, and no login counts more requests than were ever sent.
  With write-behind (``Bounds.flush`` set) the one loss allowed is a crash's:
  requests acknowledged within one ``store_flush_interval`` (plus slack)
  before their node was SIGKILLed, or stopped or cut off from Redis for
  longer than its lease (to the cluster that node is dead: another takes its
  accounts over from the store), plus, when cut off, those it acknowledged
  while its lease could still hold. Never after a pause within the lease, a
  broker pause or restart, or a hand-over.
- ``resurrection``: a login during the run sees every business request
  acknowledged before it was invoked, and never less than an earlier login
  (less only by what a crash may take with write-behind: an earlier login
  may have read state its node had not flushed yet).
- ``broker_data_loss``: after the broker came back empty, an account that
  was online then still has every acknowledged request (its owner wrote its
  state back). Accounts nobody held at that moment lived only in the broker:
  their history starts again from zero.
- ``convergence``: after each fault, the members every node lists for a room
  equal the links actually in it, and every member hears every other.
- ``deaf_node``: a node cut off from the broker reports not ready while it
  is, and every node is ready again soon after a fault heals.
- ``workers``: a hung worker is killed and replaced within a few seconds.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .history import CLIENT_KINDS, History, Op

INVARIANTS = (
    "one_owner",
    "acked_state",
    "resurrection",
    "convergence",
    "deaf_node",
    "broker_data_loss",
    "workers",
)
SERVING = frozenset({"business", "join", "leave"})
LOGINS = frozenset({"login", "final_login"})
#: A node cut off this long must have said so on /readyz ("a few seconds").
DETECT = 5.0
#: A hung worker must be replaced within this many seconds.
WORKER_LIMIT = 10.0


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str


@dataclass(frozen=True)
class Bounds:
    """The clocks of the cluster under test."""

    lease: float
    timeout: float
    slack: float = 1.0
    flush: float | None = None  # write-behind's store_flush_interval; None: store_sync always

    @property
    def grace(self) -> float:
        return self.lease + self.timeout + self.slack


class Links:
    """The history per link: its login, its requests, and how it ended."""

    def __init__(self, history: History) -> None:
        self.login: dict[int, Op] = {}
        self.ops: dict[int, list[Op]] = defaultdict(list)
        self.server_ends: dict[int, float] = {}  # replaced notice or close by the server
        self.client_closed: dict[int, float] = {}
        for op in history.ops:
            if not op.link:
                continue
            if op.kind in LOGINS and op.ok:
                self.login[op.link] = op
            elif op.kind in SERVING or op.kind == "logout":
                self.ops[op.link].append(op)
                if op.outcome == "closed" or (op.outcome == "error" and op.value == "replaced"):
                    self.server_ends.setdefault(op.link, op.end)
            elif op.kind == "notice" and op.value == "replaced":
                self.server_ends.setdefault(op.link, op.invoked)
            elif op.kind == "closed":
                if op.value == "client":
                    self.client_closed.setdefault(op.link, op.invoked)
                else:
                    self.server_ends.setdefault(op.link, op.invoked)

    def closed_at(self, link: int) -> float:
        return min(self.server_ends.get(link, 1e18), self.client_closed.get(link, 1e18))

    def served_after(self, link: int, t: float) -> list[Op]:
        return [op for op in self.ops[link] if op.kind in SERVING and op.ok and op.invoked > t]


def one_owner(history: History, bounds: Bounds) -> list[Violation]:
    links = Links(history)
    found: list[Violation] = []
    by_account: dict[str, list[Op]] = defaultdict(list)
    for op in links.login.values():
        by_account[op.account].append(op)
    for account, logins in by_account.items():
        logins.sort(key=lambda op: op.end)
        for a in logins:
            for b in logins:
                if a.link == b.link:
                    continue
                if b.invoked > a.end:  # b is newer: a must stop serving and be told
                    after = b.end + bounds.grace
                    late = links.served_after(a.link, after)
                    if late:
                        found.append(Violation("one_owner", (
                            f"{account}: link {a.link} on {a.node} served {late[0].kind} invoked "
                            f"at {late[0].invoked:.2f}s, {late[0].invoked - b.end:.2f}s after "
                            f"link {b.link} on {b.node} logged in (at {b.end:.2f}s)")))  # fmt: skip
                    elif links.client_closed.get(a.link, 1e18) > after and (
                        a.link not in links.server_ends
                    ):
                        found.append(Violation("one_owner", (
                            f"{account}: link {a.link} on {a.node} was never told it was replaced "
                            f"by link {b.link} on {b.node} (logged in at {b.end:.2f}s)")))  # fmt: skip
                elif a.link < b.link and a.invoked < b.end and b.invoked < a.end:
                    after = max(a.end, b.end) + bounds.grace
                    both = links.served_after(a.link, after), links.served_after(b.link, after)
                    if both[0] and both[1]:
                        found.append(Violation("one_owner", (
                            f"{account}: links {a.link} on {a.node} and {b.link} on {b.node} "
                            f"(concurrent logins) both served after {after:.2f}s")))  # fmt: skip
    return found


def _held(links: Links, account: str, at: float) -> bool:
    """Some link of ``account`` had an acknowledged login and was still open at ``at``."""
    return any(
        op.account == account and op.end < at and links.closed_at(link) > at
        for link, op in links.login.items()
    )


#: Faults that are a crash of the node they hit, as the cluster sees it.
CRASHES = frozenset({"kill_node", "pause_node_long"})


def _crash_windows(history: History, bounds: Bounds) -> dict[str, list[tuple[float, float]]]:
    """Per node: when a write-behind acknowledgement may be lost with its node (see above)."""
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    if bounds.flush is None:
        return windows
    before = bounds.flush + bounds.slack
    for op in history.of("fault"):
        v = op.value if isinstance(op.value, dict) else {}
        if v.get("kind") in CRASHES:
            windows[op.node].append((op.invoked - before, op.invoked + 0.5))  # reply in flight
        elif v.get("blackhole") and not v.get("subscribers_only"):
            if v.get("seconds", 0) > bounds.lease:
                windows[op.node].append((op.invoked - before, op.invoked + bounds.lease))
    return windows


def _state_checks(history: History, bounds: Bounds) -> list[Violation]:
    links = Links(history)
    crashes = _crash_windows(history, bounds)
    restarts = sorted(
        op.invoked
        for op in history.of("fault")
        if isinstance(op.value, dict) and op.value.get("restart")
    )
    acks: dict[str, list[float]] = defaultdict(list)
    sent: dict[str, list[float]] = defaultdict(list)
    lost: dict[str, list[float]] = defaultdict(list)  # acknowledgements a crash may take
    for op in history.of("business"):
        sent[op.account].append(op.invoked)
        if op.ok:
            acks[op.account].append(op.end)
            if any(a <= op.end <= b for a, b in crashes.get(op.node, ())):
                lost[op.account].append(op.end)
    for times in (*acks.values(), *sent.values(), *lost.values()):
        times.sort()
    logins = sorted((op for op in history.ops if op.kind in LOGINS and op.ok), key=lambda o: o.end)
    found: list[Violation] = []
    # One lost update shows in every later login: report each deficit once.
    reported: dict[tuple[str, str], int] = defaultdict(int)
    for login in logins:
        account = login.account
        if account.startswith("probe-"):
            continue
        counter = int(login.value)
        # The broker forgot accounts nobody held when it restarted empty.
        resets = [t for t in restarts if t < login.invoked and not _held(links, account, t)]
        since = resets[-1] if resets else float("-inf")
        # A restart since this account's previous login: the loss is the broker's.
        previous = max((o.end for o in logins if o.account == account and o.end < login.invoked),
                       default=float("-inf"))  # fmt: skip
        held_restart = any(max(since, previous) < t < login.invoked for t in restarts)
        times, may_go = acks[account], lost[account]
        lower = bisect.bisect_left(times, login.invoked) - bisect.bisect_right(times, since)
        lower -= bisect.bisect_left(may_go, login.invoked) - bisect.bisect_right(may_go, since)
        upper = bisect.bisect_left(sent[account], login.end)
        invariant = (
            "broker_data_loss"
            if held_restart
            else "acked_state"
            if login.kind == "final_login"
            else "resurrection"
        )
        key = "final" if invariant == "acked_state" else "during"
        if counter < lower and lower - counter > reported[account, key]:
            reported[account, key] = lower - counter
            found.append(Violation(invariant, (
                f"{account}: login on {login.node} at {login.invoked:.2f}s saw counter {counter}, "
                f"but {lower} business requests were acknowledged before it")))  # fmt: skip
        if counter > upper and counter - upper > reported[account, "upper"]:
            reported[account, "upper"] = counter - upper
            found.append(Violation("acked_state", (
                f"{account}: login on {login.node} at {login.invoked:.2f}s saw counter {counter}, "
                f"more than the {upper} business requests ever sent")))  # fmt: skip
        for earlier in logins:
            if earlier is login or earlier.account != account or earlier.end >= login.invoked:
                continue
            # A login may have read write-behind state that its node's crash then
            # took (the loss acked_state allows): those requests do not count.
            crashed = bisect.bisect_left(may_go, earlier.end) - bisect.bisect_right(may_go, since)
            older = int(earlier.value) - counter - crashed
            if earlier.end > since and older > reported[account, "older"]:
                reported[account, "older"] = older
                found.append(Violation("resurrection", (
                    f"{account}: login on {login.node} at {login.invoked:.2f}s saw counter "
                    f"{counter}, older than the {earlier.value} a login on {earlier.node} saw at "
                    f"{earlier.end:.2f}s")))  # fmt: skip
                break
    return found


def acked_state(history: History, bounds: Bounds) -> list[Violation]:
    return [v for v in _state_checks(history, bounds) if v.invariant == "acked_state"]


def resurrection(history: History, bounds: Bounds) -> list[Violation]:
    return [v for v in _state_checks(history, bounds) if v.invariant == "resurrection"]


def broker_data_loss(history: History, bounds: Bounds) -> list[Violation]:
    return [v for v in _state_checks(history, bounds) if v.invariant == "broker_data_loss"]


def convergence(history: History, bounds: Bounds) -> list[Violation]:
    found = []
    for op in history.of("members"):
        v = op.value
        if "error" in v:
            found.append(Violation("convergence", f"room {v['room']} on {op.node}: {v['error']}"))
        elif v["members"] != v["expected"]:
            found.append(Violation("convergence", (
                f"room {v['room']} on {op.node} at {op.end:.2f}s lists {v['members']}, "
                f"the links in it are {v['expected']}")))  # fmt: skip
    for op in history.of("hear"):
        v = op.value
        if not v["heard"]:
            found.append(Violation("convergence", (
                f"room {v['room']}: a member on {v['to']} never heard a line said on "
                f"{v['from']} (at {op.invoked:.2f}s)")))  # fmt: skip
    return found


def deaf_node(history: History, bounds: Bounds) -> list[Violation]:
    samples: dict[str, list[tuple[float, bool | None]]] = defaultdict(list)
    for op in history.of("readyz"):
        samples[op.node].append((op.invoked, op.value))
    found = []
    faults = [op for op in history.of("fault") if isinstance(op.value, dict)]
    for fault in faults:
        v = fault.value
        if v.get("blackhole") and v.get("seconds", 0) >= DETECT + 1.0:
            window = [r for t, r in samples[fault.node] if fault.invoked <= t <= fault.end]
            if False not in window:
                found.append(Violation("deaf_node", (
                    f"{fault.node}, cut off from the broker for {v['seconds']:.1f}s at "
                    f"{fault.invoked:.2f}s, never reported not ready "
                    f"({len(window)} /readyz samples)")))  # fmt: skip
        recover = fault.end + bounds.grace + DETECT
        for node, series in samples.items():
            after = [(t, r) for t, r in series if fault.end < t <= recover]
            later = [t for t, _ in series if t > recover]
            if after and later and True not in [r for _, r in after]:
                found.append(Violation("deaf_node", (
                    f"{node} was not ready again within {recover - fault.end:.1f}s after "
                    f"{v['kind']} healed at {fault.end:.2f}s")))  # fmt: skip
    return found


def workers(history: History, bounds: Bounds) -> list[Violation]:
    found = []
    for op in history.of("fault"):
        v = op.value
        if not isinstance(v, dict) or v.get("kind") != "hang_worker" or "skipped" in v:
            continue
        took = v.get("replaced_after")
        if took is None or took > WORKER_LIMIT:
            found.append(Violation("workers", (
                f"worker {v['worker']} (pid {v['pid']}) hung at {op.invoked:.2f}s was "
                + (f"replaced only after {took:.1f}s" if took is not None
                   else f"still there after {v['waited']:.0f}s"))))  # fmt: skip
    return found


CHECKERS: dict[str, Callable[[History, Bounds], list[Violation]]] = {
    "one_owner": one_owner,
    "acked_state": acked_state,
    "resurrection": resurrection,
    "convergence": convergence,
    "deaf_node": deaf_node,
    "broker_data_loss": broker_data_loss,
    "workers": workers,
}


def check(history: History, bounds: Bounds) -> dict[str, list[Violation]]:
    """Every checker over ``history``: {invariant: its violations}."""
    return {name: checker(history, bounds) for name, checker in CHECKERS.items()}


def counts(history: History) -> dict[str, int]:
    """What the run did: faults injected, client requests, acknowledged writes."""
    ops: Iterable[Op] = history.ops
    return {
        "faults": sum(1 for op in ops if op.kind == "fault"),
        "requests": sum(1 for op in ops if op.kind in CLIENT_KINDS),
        "acked_writes": sum(1 for op in ops if op.kind == "business" and op.ok),
    }
