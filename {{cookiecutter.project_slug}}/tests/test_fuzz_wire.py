"""Random hostile streams against a live server: it answers, closes, never breaks.

Each stream mixes valid requests, random values under known ids, unknown ids,
empty values, oversized lengths and random cut points, written in random
pieces and sometimes abandoned mid-frame. Whatever arrives, no worker may die,
every link must be cleaned up, and a client connected meanwhile is served.
"""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

import fwkit
from fwkit import EchoReq, RawConn, frame

from {{ cookiecutter.package_name }}.sgs import Client, Server
from {{ cookiecutter.package_name }}.sgs.testing import running_server

STREAMS = 60


def hostile_stream(rng: random.Random, server: Server) -> bytes:
    codec = server.codec
    ids = [cls.__msg_id__ for cls in fwkit.catalog]
    parts: list[bytes] = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.35:
            parts.append(codec.encode_frame(EchoReq(seq=rng.randint(0, 99), text="ok")))
        elif kind < 0.6:
            value = rng.randbytes(rng.randint(0, 40))
            parts.append(frame(rng.choice(ids), value))
        elif kind < 0.75:
            parts.append(frame(rng.randint(0, 2**32 - 1), rng.randbytes(rng.randint(0, 8))))
        elif kind < 0.85:
            parts.append(frame(rng.choice(ids), b""))
        elif kind < 0.93:
            parts.append(rng.randbytes(rng.randint(1, 30)))  # raw garbage
        else:
            parts.append(rng.randint(0, 2**32 - 1).to_bytes(4, "big") + (2**31).to_bytes(4, "big"))
    return b"".join(parts)


async def play(port: int, data: bytes, rng: random.Random) -> None:
    raw = await RawConn.open(port)
    cut = len(data) if rng.random() < 0.7 else rng.randint(0, len(data))
    pos = 0
    while pos < cut:
        step = rng.randint(1, 64)
        raw.send(data[pos : min(cut, pos + step)])
        pos += step
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    if rng.random() < 0.5:
        try:  # read whatever the server answers until it closes or goes quiet
            await asyncio.wait_for(raw.reader.read(1 << 16), 0.05)
        except (TimeoutError, ConnectionError):
            pass
    await raw.close()


@pytest.mark.parametrize("model", fwkit.MODELS)
@pytest.mark.parametrize("protocol", ["json", "protobuf"])
async def test_hostile_streams_never_break_the_server(
    model: str, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(f"{model}-{protocol}")
    baseline = len(asyncio.all_tasks())
    async with running_server(
        fwkit.router, fwkit.catalog, protocol=protocol, resource_model=model, max_frame_size=4096
    ) as server:
        port = server.port or 0
        bystander = await Client(
            "127.0.0.1", port, protocol=protocol, catalog=fwkit.catalog
        ).connect()
        shared = len(asyncio.all_tasks())
        for batch in range(STREAMS // 10):
            await asyncio.gather(*(play(port, hostile_stream(rng, server), rng) for _ in range(10)))
            reply = await bystander.request(EchoReq(seq=batch, text="still here"), timeout=5)
            assert (reply.seq, reply.text) == (batch, "still here")
        for _ in range(300):
            if len(server.links) == 1:
                break
            await asyncio.sleep(0.01)
        assert list(server.links) == [1]  # only the bystander is left
        assert server.stats.accepted == STREAMS + 1
        assert server.stats.protocol_errors > 0
        await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) == shared  # per-link tasks ended with their links
        await bystander.close()
    assert len(asyncio.all_tasks()) == baseline
    broken = [
        r.getMessage()
        for r in caplog.records
        if "died" in r.getMessage() or "failed on" in r.getMessage()
    ]
    assert broken == []
