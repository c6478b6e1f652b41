"""The history: every operation a client or the nemesis did, with its times and result.

An :class:`Op` is invoked at one time and completes at another (monotonic
seconds since the run began); its ``outcome`` is ``ok`` (acknowledged, with
``value``), ``error`` (an Error reply, its code in ``value``), ``closed``
(the link closed under it) or ``timeout`` (unknown: it may or may not have
happened). Checkers only ever read a history, so a failed run can be dumped
as JSON and checked again, and a checker can be tested on a history written
by hand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK, ERROR, CLOSED, TIMEOUT = "ok", "error", "closed", "timeout"

#: Operations of the players (the requests the summary counts).
CLIENT_KINDS = frozenset({"login", "business", "join", "leave", "logout"})


@dataclass(slots=True)
class Op:
    """One operation: who did what on which link, when, and what came back."""

    kind: str
    invoked: float
    process: str = ""
    link: int = 0
    node: str = ""
    account: str = ""
    completed: float | None = None
    outcome: str = ""
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def end(self) -> float:
        """When it completed; an op that never did counts as lasting forever."""
        return self.completed if self.completed is not None else float("inf")


@dataclass
class History:
    """Append-only list of operations, with the clock they share."""

    ops: list[Op] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.started

    def invoke(self, kind: str, **fields: Any) -> Op:
        op = Op(kind=kind, invoked=self.now(), **fields)
        self.ops.append(op)
        return op

    def complete(self, op: Op, outcome: str, value: Any = None) -> Op:
        op.completed = self.now()
        op.outcome = outcome
        op.value = value
        return op

    def event(self, kind: str, value: Any = None, **fields: Any) -> Op:
        """Something instantaneous (a notice, a close, a readyz sample)."""
        op = self.invoke(kind, **fields)
        return self.complete(op, OK, value)

    def of(self, *kinds: str) -> Iterator[Op]:
        return (op for op in self.ops if op.kind in kinds)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps([asdict(op) for op in self.ops], indent=0, default=str))

    @classmethod
    def load(cls, path: Path) -> History:
        return cls(ops=[Op(**raw) for raw in json.loads(path.read_text())], started=0.0)
