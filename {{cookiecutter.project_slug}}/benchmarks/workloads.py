"""Request and expected-reply bytes for each server, built before any clock starts.

Baselines get compact JSON requests (the bytes the framework's JSON codec
emits, too); their expected replies follow what each baseline does (``raw``
echoes the value under id+1). The framework's bytes come from its own codec
(``sgs.protocol.get_codec``), so protobuf, msgpack and bson runs send and
verify real frames of that protocol.
"""

from __future__ import annotations

import importlib
from typing import Any

import msgspec

from .jobs import IdleJob, LoadJob, Member, ReqRepJob, RoomJob, Step
from .scenarios import Scenario
from .wire import ROOM_TICK, frame, json_value

ROOM = "bench"
TEXT_SIZE = 64
CYCLE = 64


def text_for(i: int, label: str = "echo") -> str:
    """A distinct 64-byte ASCII text per slot, so a reply crossed with another fails."""
    head = f"{label}-{i:06d}-"
    return head + "x" * (TEXT_SIZE - len(head))


class JsonBaselineBytes:
    """Compact JSON requests; replies as the ``json`` and ``streams`` baselines build them."""

    name = "json"

    def request(self, msg_id: int, obj: dict[str, Any]) -> bytes:
        return frame(msg_id, json_value(obj))

    def reply(self, msg_id: int, obj: dict[str, Any], request: bytes) -> bytes | None:
        return frame(msg_id, json_value(obj))

    def step(
        self, msg_id: int, obj: dict[str, Any], reply_id: int, reply: dict[str, Any] | None
    ) -> Step:
        req = self.request(msg_id, obj)
        expected = None if reply is None else self.reply(reply_id, reply, req)
        return Step(req, expected, reply_id)

    def room_message(self, say: bytes, room: str, sender: str, text: str) -> bytes:
        return frame(14, json_value({"room": room, "sender": sender, "text": text}))


class RawBaselineBytes(JsonBaselineBytes):
    """Same requests; ``raw`` echoes each value unchanged under id+1."""

    name = "raw"

    def reply(self, msg_id: int, obj: dict[str, Any], request: bytes) -> bytes | None:
        return frame(msg_id, request[8:])

    def room_message(self, say: bytes, room: str, sender: str, text: str) -> bytes:
        return frame(14, say[8:])


class CodecBytes(JsonBaselineBytes):
    """The framework's own codec for ``protocol``, over the app's message catalogue."""

    def __init__(self, package: str, protocol: str) -> None:
        messages = importlib.import_module(f"{package}.messages")
        protocol_module = importlib.import_module(f"{package}.sgs.protocol")
        catalog = messages.catalog
        self.codec = protocol_module.get_codec(protocol, catalog)
        self.classes = {cls.__msg_id__: cls for cls in catalog}
        self.name = protocol

    def _encode(self, msg_id: int, obj: dict[str, Any]) -> bytes:
        # convert, not cls(**obj): a Struct's constructor takes nested values as
        # they are, so a nested dict (LoginResp's user) must be made a Struct first.
        return frame(msg_id, self.codec.encode(msgspec.convert(obj, self.classes[msg_id])))

    def request(self, msg_id: int, obj: dict[str, Any]) -> bytes:
        return self._encode(msg_id, obj)

    def reply(self, msg_id: int, obj: dict[str, Any], request: bytes) -> bytes | None:
        return self._encode(msg_id, obj)

    def room_message(self, say: bytes, room: str, sender: str, text: str) -> bytes:
        return self._encode(14, {"room": room, "sender": sender, "text": text})


def encoder_for(server: str, protocol: str, package: str | None) -> JsonBaselineBytes:
    if server == "raw":
        return RawBaselineBytes()
    if server in ("json", "streams"):
        return JsonBaselineBytes()
    if package is None:
        raise LookupError("the framework server needs the app package")
    return CodecBytes(package, protocol)


def echo_cycle(enc: JsonBaselineBytes) -> list[Step]:
    return [enc.step(9, {"text": text_for(i)}, 10, {"text": text_for(i)}) for i in range(CYCLE)]


def business_cycle(enc: JsonBaselineBytes) -> list[Step]:
    steps = []
    for i in range(CYCLE):
        v1, v2 = i * 7919 % 100_003, i * 104_729 % 1_000_033
        steps.append(
            enc.step(3, {"key": i, "value1": v1, "value2": v2}, 4, {"key": i, "result": v1 + v2})
        )
    return steps


def login_step(enc: JsonBaselineBytes, account: str) -> Step:
    return enc.step(1, {"account_id": account}, 2, {"user": {"account_id": account, "counter": 0}})


def arm_step(enc: JsonBaselineBytes) -> Step:
    """ResumeReq with no token: arm resumption; ResumeResp carries a random token (id only)."""
    return enc.step(30, {"token": "", "last_seq": 0}, 29, None)


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """Round-robin ``items`` over ``parts`` lists (some may be empty when items are few)."""
    return [items[i::parts] for i in range(parts)]


def build_jobs(
    scenario: Scenario,
    enc: JsonBaselineBytes,
    port: int,
    processes: int,
    warmup: float,
    duration: float,
    ports: tuple[int, ...] = (),
    arm: bool = False,
) -> list[LoadJob]:
    """One job per load process; connections are spread round-robin.

    With several ``ports`` (cluster nodes) the room members are split into
    contiguous blocks, one per node, so every load process holds members of
    every node.
    """
    if scenario.kind == "reqrep":
        if scenario.flow == "echo":
            cycle = echo_cycle(enc)
            prefixes: list[list[Step]] = [[] for _ in range(scenario.conns)]
        else:  # login_business, login_echo: each connection logs in first
            cycle = business_cycle(enc) if scenario.flow == "login_business" else echo_cycle(enc)
            prefixes = [[login_step(enc, f"bench-{c:05d}")] for c in range(scenario.conns)]
            if arm:  # then arms session resumption (the resume_on variant)
                prefixes = [[*p, arm_step(enc)] for p in prefixes]
        works: list[Any] = [
            ReqRepJob(p, cycle, scenario.depth) for p in split(prefixes, processes) if p
        ]
    elif scenario.kind == "room":
        members, deliveries = [], {}
        for i in range(scenario.conns):
            account, text = f"m{i:05d}", text_for(i, "say")
            say = enc.request(13, {"text": text})
            deliveries[enc.room_message(say, ROOM, account, text)] = i
            setup = [login_step(enc, account), enc.step(11, {"room": ROOM}, 12, None)]
            node = i * len(ports) // scenario.conns if ports else 0
            members.append(Member(i, setup, say, node))
        works = [
            RoomJob(
                part,
                deliveries,
                scenario.conns,
                scenario.rate,
                scenario.depth,
                frozenset({ROOM_TICK}),
            )
            for part in split(members, processes)
            if part
        ]
    else:
        ping = enc.step(7, {"client_time_ms": 1}, 8, None)
        share = [len(p) for p in split(list(range(scenario.conns)), processes)]
        works = [IdleJob(n, ping) for n in share if n]
    nofile = scenario.conns + 1024
    return [
        LoadJob("127.0.0.1", port, warmup, duration, w, nofile=nofile, ports=ports) for w in works
    ]
