"""The game's logic written the plain way (dicts and ``json``), shared by two baselines.

``json`` and ``streams`` must do the same work per message as the framework's
sample game (login, counters, business sums, rooms), or a ratio against them
would flatter or punish the framework for work it does and they skip. Each
handler takes the decoded request and returns the reply frame; room pushes to
other members go through ``conn.push``.
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any, Protocol

_pack = struct.Struct(">II").pack
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class Conn(Protocol):
    """What the logic needs from a connection, whatever its I/O style."""

    account: str | None
    room: str | None

    def push(self, frame: bytes) -> None: ...


def _frame(msg_id: int, obj: Any) -> bytes:
    value = _dumps(obj).encode()
    return _pack(msg_id, len(value)) + value


class Game:
    """Counters by account and rooms by name: the sample game's state."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.rooms: dict[str, dict[Conn, None]] = {}
        self.handlers = {
            1: self.login,
            3: self.business,
            7: self.ping,
            9: self.echo,
            11: self.join,
            13: self.say,
        }

    def handle(self, conn: Conn, msg_id: int, obj: Any) -> bytes | None:
        """The reply frame for one decoded request (an Error frame for an unknown id)."""
        handler = self.handlers.get(msg_id)
        if handler is None:
            return _frame(99, {"code": "unknown_message", "message": "", "msg_id": msg_id})
        return handler(conn, obj)

    def echo(self, conn: Conn, obj: Any) -> bytes:
        return _frame(10, {"text": obj["text"]})

    def ping(self, conn: Conn, obj: Any) -> bytes:
        now = int(time.time() * 1000)
        return _frame(8, {"client_time_ms": obj.get("client_time_ms", 0), "server_time_ms": now})

    def login(self, conn: Conn, obj: Any) -> bytes:
        account = obj["account_id"]
        conn.account = account
        counter = self.counters.setdefault(account, 0)
        return _frame(2, {"user": {"account_id": account, "counter": counter}})

    def business(self, conn: Conn, obj: Any) -> bytes:
        if conn.account is None:
            return _frame(99, {"code": "not_logged_in", "message": "log in first", "msg_id": 3})
        self.counters[conn.account] += 1
        return _frame(4, {"key": obj["key"], "result": obj["value1"] + obj["value2"]})

    def join(self, conn: Conn, obj: Any) -> bytes:
        self.leave(conn)
        name = obj["room"]
        members = self.rooms.setdefault(name, {})
        members[conn] = None
        conn.room = name
        return _frame(12, {"room": name, "members": sorted(m.account or "" for m in members)})

    def say(self, conn: Conn, obj: Any) -> bytes | None:
        if conn.room is None:
            return _frame(99, {"code": "not_in_room", "message": "", "msg_id": 13})
        msg = _frame(14, {"room": conn.room, "sender": conn.account, "text": obj["text"]})
        for member in self.rooms[conn.room]:
            if member is not conn:
                member.push(msg)
        return msg  # the sender's own copy, in order with its other replies

    def leave(self, conn: Conn) -> None:
        """Forget ``conn``'s room membership (on re-join and on disconnect)."""
        if conn.room is not None:
            self.rooms[conn.room].pop(conn, None)
            conn.room = None
