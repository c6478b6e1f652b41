"""``make soak``: one server under good, slow, hostile and churning clients at once.

``python -m benchmarks.soak --seconds 600`` starts the game server in its own
process with the settings ``serve`` uses by default (every limit on), then
runs, side by side and each bounded in count and time:

* **robots** that log in, join rooms, chat below the chat limit and send
  verified business and echo requests: they must see **zero** errors;
* **slow readers** that log in, join a busy room and never read, so the
  server's send side fills up and has to shed them;
* **hostile streams**: junk bytes, an oversized header, unknown ids, a text
  line, a frame trickled byte by byte (slowloris) and request floods past the
  rate limit, each on a fresh connection;
* **churn**: connections that open, ping and close as fast as they can.

It fails unless the robots saw no error, resident memory after the warm-up
stays within ``--rss-growth-mb`` of its level then, open links, tasks and
queued bytes return to their starting level once the load stops, and the
server then stops gracefully with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .discover import ensure_importable, find_package

HEADER = struct.Struct(">II")


@dataclass
class Tally:
    """What every kind of client did; robots' errors must stay at zero."""

    robot_requests: int = 0
    robot_errors: list[str] = field(default_factory=list)
    slow_readers: int = 0
    hostile: int = 0
    churned: int = 0


class Server:
    """``python -m benchmarks.serve framework --limits default`` with its STATS channel."""

    def __init__(self, protocol: str, log: Path) -> None:
        self.protocol = protocol
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        """Start it; its log (one line per hostile link at most) goes to ``self.log``."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = await self._spawn(log)
        line = await asyncio.wait_for(self._line(), 30)
        if not line.startswith("READY "):
            raise RuntimeError(f"server did not start: {line!r}")
        self.port = int(line.split()[1])

    async def _spawn(self, log: Any) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.serve",
            "framework",
            "--limits",
            "default",
            "--protocol",
            self.protocol,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )

    async def _line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        raw = await self.process.stdout.readline()
        if not raw:
            raise RuntimeError("the server process ended")
        return raw.decode().strip()

    async def stats(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(b"stats\n")
        await self.process.stdin.drain()
        while True:
            line = await asyncio.wait_for(self._line(), 10)
            if line.startswith("STATS "):
                return json.loads(line[6:])

    async def stop(self) -> int:
        """SIGTERM, then the exit code (a graceful stop is 0)."""
        assert self.process is not None
        self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), 30)


def game_client(port: int, protocol: str) -> Any:
    package = find_package()
    client_module = __import__(f"{package}.client", fromlist=["GameClient"])
    return client_module.GameClient("127.0.0.1", port, protocol=protocol, timeout=10)


def codec_of(protocol: str) -> Any:
    package = find_package()
    messages = __import__(f"{package}.messages", fromlist=["catalog"])
    protocols = __import__(f"{package}.sgs.protocol", fromlist=["get_codec"])
    return messages, protocols.get_codec(protocol, messages.catalog)


async def robot(n: int, port: int, protocol: str, until: float, tally: Tally) -> None:
    """A well-behaved player: every reply checked, chat once a second."""
    rng = random.Random(n)
    try:
        async with game_client(port, protocol) as client:
            client.on_error(lambda e: tally.robot_errors.append(f"robot {n}: pushed {e}"))
            await client.login(f"soak-robot-{n}")
            await client.join(f"soak-room-{n % 3}")
            last_say = 0.0
            k = 0
            while time.monotonic() < until:
                a, b = rng.randrange(1000), rng.randrange(1000)
                reply = await client.business(k, a, b)
                if reply.result != a + b:
                    tally.robot_errors.append(f"robot {n}: {a}+{b} answered {reply.result}")
                text = f"r{n}-{k}"
                if await client.echo(text) != text:
                    tally.robot_errors.append(f"robot {n}: echo came back wrong")
                if time.monotonic() - last_say >= 1.0:
                    await client.say(f"robot {n} says {k}")
                    last_say = time.monotonic()
                tally.robot_requests += 2
                k += 1
                await asyncio.sleep(0.02)
    except Exception as exc:  # any failure of a well-behaved client fails the soak
        tally.robot_errors.append(f"robot {n}: {type(exc).__name__}: {exc}")


async def raw_connection(port: int, rcvbuf: int | None = None) -> tuple[Any, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def close(writer: Any) -> None:
    writer.close()
    with contextlib.suppress(OSError, ConnectionError):
        await writer.wait_closed()


async def slow_reader(n: int, port: int, protocol: str, until: float, tally: Tally) -> None:
    """Log in, join a robots' room, never read; reconnect every few seconds."""
    messages, codec = codec_of(protocol)
    k = 0
    while time.monotonic() < until:
        reader, writer = await raw_connection(port, rcvbuf=4096)
        login = messages.LoginReq(account_id=f"soak-slow-{n}-{k}")
        join = messages.JoinRoomReq(room=f"soak-room-{n % 3}")
        writer.write(codec.encode_frame(login) + codec.encode_frame(join))
        tally.slow_readers += 1
        await asyncio.sleep(min(5.0, max(0.0, until - time.monotonic())))
        await close(writer)
        k += 1


def attacks(protocol: str) -> list[Callable[[Any, Any], Awaitable[None]]]:
    messages, codec = codec_of(protocol)
    echo_id = messages.EchoReq.__msg_id__
    flood_frame = codec.encode_frame(messages.EchoReq(text="flood"))

    async def junk(reader: Any, writer: Any) -> None:
        writer.write(random.randbytes(random.randrange(1, 4096)))

    async def oversized(reader: Any, writer: Any) -> None:
        writer.write(HEADER.pack(echo_id, 1 << 30))

    async def unknown_ids(reader: Any, writer: Any) -> None:
        writer.write(b"".join(HEADER.pack(9_000_000 + i, 3) + b"abc" for i in range(50)))

    async def text_line(reader: Any, writer: Any) -> None:
        writer.write(b"GET / HTTP/1.1\r\nHost: game\r\n\r\n")

    async def slowloris(reader: Any, writer: Any) -> None:
        writer.write(HEADER.pack(echo_id, 1000) + b"{")
        closed = asyncio.ensure_future(reader.read())  # the server's answer, then EOF
        try:
            for _ in range(150):  # one byte every 0.1 s; frame_timeout closes the link first
                if closed.done():
                    return
                writer.write(b" ")
                await asyncio.sleep(0.1)
        finally:
            closed.cancel()

    async def flood(reader: Any, writer: Any) -> None:
        writer.write(flood_frame * 5000)  # past rate_limit_messages' burst

    return [junk, oversized, unknown_ids, text_line, slowloris, flood]


async def hostile(n: int, port: int, protocol: str, until: float, tally: Tally) -> None:
    rng = random.Random(1000 + n)
    kinds = attacks(protocol)
    while time.monotonic() < until:
        attack = rng.choice(kinds)
        try:
            reader, writer = await raw_connection(port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        tally.hostile += 1
        with contextlib.suppress(OSError, ConnectionError, TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(attack(reader, writer), 20)
            await asyncio.wait_for(reader.read(1 << 20), 2)  # take what the server answers
        await close(writer)


async def churn(port: int, protocol: str, until: float, tally: Tally) -> None:
    while time.monotonic() < until:
        try:
            async with game_client(port, protocol) as client:
                await client.ping()
            tally.churned += 1
        except OSError:
            await asyncio.sleep(0.05)


async def settle(server: Server, start: dict[str, int], timeout: float) -> dict[str, int]:
    """Wait for links, tasks and queued bytes to come back to ``start``."""
    deadline = time.monotonic() + timeout
    while True:
        now = (await server.stats())["runtime"]
        back = (
            now["links"] <= start["links"]
            and now["tasks"] <= start["tasks"]
            and now["queued_bytes"] <= start["queued_bytes"]
        )
        if back or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.5)


async def soak(args: argparse.Namespace) -> int:
    server = Server(args.protocol, Path(args.log))
    await server.start()
    print(f"server on port {server.port}, its log in {args.log}", flush=True)
    tally = Tally()
    failures: list[str] = []
    try:
        start = (await server.stats())["runtime"]
        began = time.monotonic()
        until = began + args.seconds
        warm_up = min(max(args.seconds * 0.2, 5.0), 60.0)
        load = [
            *(robot(n, server.port, args.protocol, until, tally) for n in range(args.robots)),
            *(slow_reader(n, server.port, args.protocol, until, tally) for n in range(4)),
            *(hostile(n, server.port, args.protocol, until, tally) for n in range(4)),
            *(churn(server.port, args.protocol, until, tally) for _ in range(2)),
        ]
        tasks = [asyncio.create_task(job) for job in load]
        await asyncio.sleep(warm_up)
        warm = (await server.stats())["runtime"]["rss_kb"]
        peak = warm
        while time.monotonic() < until:
            await asyncio.sleep(min(5.0, max(0.1, until - time.monotonic())))
            rss = (await server.stats())["runtime"]["rss_kb"]
            peak = max(peak, rss)
            elapsed = time.monotonic() - began
            print(
                f"[{elapsed:5.0f}s] rss {rss / 1024:.1f} MB, robots {tally.robot_requests:,} "
                f"requests ({len(tally.robot_errors)} errors), slow {tally.slow_readers}, "
                f"hostile {tally.hostile}, churn {tally.churned:,}",
                flush=True,
            )
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        end = await settle(server, start, timeout=30.0)
        counters = (await server.stats())["server"]
        growth_mb = (peak - warm) / 1024
        print(
            f"after the load: {end['links']} links (start {start['links']}), {end['tasks']} "
            f"tasks (start {start['tasks']}), {end['queued_bytes']} bytes queued; RSS "
            f"{warm / 1024:.1f} MB after warm-up, peak {peak / 1024:.1f} MB "
            f"(+{growth_mb:.1f} MB, bound {args.rss_growth_mb} MB)"
        )
        print("server counters: " + json.dumps(counters))
        if tally.robot_errors:
            failures.append(
                f"robots saw {len(tally.robot_errors)} errors: {tally.robot_errors[:5]}"
            )
        if tally.robot_requests == 0 or tally.hostile == 0 or tally.churned == 0:
            failures.append(f"some load never ran: {tally}")
        if growth_mb > args.rss_growth_mb:
            failures.append(f"RSS grew {growth_mb:.1f} MB after the warm-up")
        for name in ("links", "tasks", "queued_bytes"):
            if end[name] > start[name]:
                failures.append(f"{name}: {end[name]} after the load, {start[name]} before")
    finally:
        code = await server.stop()
    if code != 0:
        failures.append(f"the server's graceful stop exited {code}")
    for failure in failures:
        print(f"SOAK FAILED: {failure}", file=sys.stderr)
    if not failures:
        print(f"SOAK PASSED: {args.seconds:.0f}s, exit code {code}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="load duration (600)")
    parser.add_argument("--robots", type=int, default=12, help="well-behaved players (12)")
    parser.add_argument("--protocol", default="json")
    parser.add_argument(
        "--log", default="benchmarks/results/soak-server.log", help="the server's log file"
    )
    parser.add_argument(
        "--rss-growth-mb",
        type=float,
        default=32.0,
        help="allowed RSS growth after the warm-up, in MB (32)",
    )
    args = parser.parse_args(argv)
    ensure_importable()
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
