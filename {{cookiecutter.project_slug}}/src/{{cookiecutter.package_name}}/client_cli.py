"""The client command, talking to a running server:
``{{ cookiecutter.project_slug }}-client``.

Subcommands: ``ping``, ``echo TEXT``, ``login ACCOUNT``, ``chat ROOM`` (lines
typed are said in the room, pushes are printed, end of input logs out) and
``robots`` (the robot swarm, exit code 1 on any error or mismatch).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TextIO, get_args

from .client import GameClient, RobotReport, now_ms, run_arena_robots, run_robots
from .messages import RoomMessage, RoomTick
from .sgs import RemoteError
from .sgs.settings import ProtocolName
from .sgs.tls import client_context

PROG = "{{ cookiecutter.project_slug }}-client"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = {{ cookiecutter.server_port }}
DEFAULT_PROTOCOL = "{{ cookiecutter.protocol }}"

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Talk to a running game server.",
    )
    add_connection_options(parser, with_defaults=True)
    # The same options after the subcommand (`robots --host H`), as the README shows.
    connection = argparse.ArgumentParser(add_help=False)
    add_connection_options(connection, with_defaults=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("ping", parents=[connection], help="measure the round trip").set_defaults(
        func=cmd_ping
    )

    echo = sub.add_parser("echo", parents=[connection], help="have the server echo TEXT")
    echo.add_argument("text", metavar="TEXT")
    echo.set_defaults(func=cmd_echo)

    login = sub.add_parser(
        "login", parents=[connection], help="log in as ACCOUNT, show its counter, log out"
    )
    login.add_argument("account", metavar="ACCOUNT")
    login.set_defaults(func=cmd_login)

    chat = sub.add_parser(
        "chat",
        parents=[connection],
        help="chat in ROOM: typed lines are said, end of input logs out",
    )
    chat.add_argument("room", metavar="ROOM")
    chat.add_argument("--account", help="account to log in as (default: $USER and a suffix)")
    chat.add_argument("--ticks", action="store_true", help="print the room's RoomTick pushes too")
    chat.set_defaults(func=cmd_chat)

    robots = sub.add_parser(
        "robots", parents=[connection], help="run the robot swarm and print a summary"
    )
    robots.add_argument("--robots", type=positive, default=10, help="robots (default %(default)s)")
    robots.add_argument(
        "--requests",
        type=non_negative,
        default=100,
        help="business requests per robot (default %(default)s)",
    )
    robots.add_argument(
        "--room-size", type=positive, default=10, help="robots per room (default %(default)s)"
    )
    robots.add_argument("--seed", type=int, help="random seed for the request values")
    robots.add_argument(
        "--drop-rate",
        type=rate,
        default=0.0,
        help="chance (0-1) a robot cuts its connection after a request and resumes it"
        " (default %(default)s)",
    )
    robots.add_argument(
        "--game",
        choices=("chat", "arena"),
        default="chat",
        help="chat: business + chat rooms; arena: play arena matches (default %(default)s)",
    )
    robots.add_argument(
        "--moves", type=positive, default=40, help="arena: inputs per robot (default %(default)s)"
    )
    robots.set_defaults(func=cmd_robots)
    return parser


def rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def add_connection_options(parser: argparse.ArgumentParser, *, with_defaults: bool) -> None:
    """Where to connect; subcommands repeat these without defaults so they only override."""

    def default(value: Any) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    parser.add_argument(
        "--host", default=default(DEFAULT_HOST), help=f"server address (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=default(DEFAULT_PORT),
        help=f"server port (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--protocol",
        choices=get_args(ProtocolName),
        default=default(DEFAULT_PROTOCOL),
        help=f"wire protocol, must match the server's (default {DEFAULT_PROTOCOL})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default(5.0),
        help="seconds per request (default 5.0)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="connect with TLS (the server has tls_cert_file set)",
    )
    parser.add_argument(
        "--ca",
        metavar="FILE",
        default=default(None),
        help="PEM CA bundle that signed the server's certificate (implies --tls; "
        "default: the system's CAs)",
    )


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def client_main(argv: list[str] | None = None) -> int:
    """Entry point of the client command (PROG); returns the exit code."""
    args = build_parser().parse_args(argv)
    command: Command = args.func
    try:
        return asyncio.run(command(args))
    except KeyboardInterrupt:
        return 130
    except RemoteError as exc:
        print(f"error: the server answered {exc}", file=sys.stderr)
    except TimeoutError:
        print(
            f"error: {args.host}:{args.port}: no answer within {args.timeout} s"
            f" (does the server speak --protocol {args.protocol}?)",
            file=sys.stderr,
        )
    except OSError as exc:  # ConnectionError included
        print(f"error: {args.host}:{args.port}: {exc}", file=sys.stderr)
    return 1


def make_client(args: argparse.Namespace) -> GameClient:
    tls = client_context(args.ca) if args.tls or args.ca else None
    return GameClient(args.host, args.port, protocol=args.protocol, timeout=args.timeout, ssl=tls)


async def cmd_ping(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        start = time.perf_counter()
        pong = await client.ping()
        rtt_ms = (time.perf_counter() - start) * 1000
    skew_ms = pong.server_time_ms - now_ms()
    print(
        f"pong from {args.host}:{args.port} in {rtt_ms:.2f} ms"
        f" (server clock {skew_ms:+d} ms from ours)"
    )
    return 0


async def cmd_echo(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        print(await client.echo(args.text))
    return 0


async def cmd_login(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        user = await client.login(args.account)
        print(f"logged in as {user.account_id}, counter {user.counter}")
        await client.logout()
    return 0


async def cmd_chat(args: argparse.Namespace) -> int:
    account = args.account or f"{getpass.getuser()}-{uuid.uuid4().hex[:4]}"
    async with make_client(args) as client:
        client.on_room_message(lambda msg: print_room_message(msg, sys.stdout))
        client.on_error(lambda err: print(f"* error: {err.code}: {err.message}", file=sys.stderr))
        if args.ticks:
            client.on_room_tick(lambda msg: print_room_tick(msg, sys.stdout))
        await client.login(account)
        joined = await client.join(args.room)
        print(f"* {account} joined {joined.room}: {', '.join(joined.members)}", flush=True)
        lines = stdin_lines()
        closed = asyncio.ensure_future(client.wait_closed())
        try:
            while True:
                next_line = asyncio.ensure_future(lines.get())
                await asyncio.wait({next_line, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed.done():
                    next_line.cancel()
                    print("* the server closed the connection", file=sys.stderr)
                    return 1
                line = next_line.result()
                if line is None:
                    break
                if line.strip():
                    await client.say(line.rstrip("\n"))
        finally:
            closed.cancel()
        await client.logout()
    print(f"* {account} logged out", flush=True)
    return 0


def print_room_message(msg: RoomMessage, out: TextIO) -> None:
    print(f"[{msg.room}] {msg.sender}: {msg.text}", file=out, flush=True)


def print_room_tick(msg: RoomTick, out: TextIO) -> None:
    print(f"[{msg.room}] tick {msg.tick}, {msg.members} member(s)", file=out, flush=True)


def stdin_lines() -> asyncio.Queue[str | None]:
    """Lines of stdin as they are typed, then None at end of input.

    A daemon thread does the blocking reads, so it works for terminals, pipes
    and files alike and never keeps the process alive on exit.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="stdin-reader", daemon=True).start()
    return queue


async def cmd_robots(args: argparse.Namespace) -> int:
    if args.game == "arena":
        arena = await run_arena_robots(
            args.host,
            args.port,
            protocol=args.protocol,
            robots=args.robots,
            moves=args.moves,
            timeout=args.timeout,
            seed=args.seed,
        )
        print(arena.summary())
        return 0 if arena.ok else 1
    steps = args.robots * (args.requests + 3)  # login, business..., join, logout
    bar = ProgressBar(steps, sys.stderr) if sys.stderr.isatty() else None
    report: RobotReport = await run_robots(
        args.host,
        args.port,
        protocol=args.protocol,
        robots=args.robots,
        requests=args.requests,
        room_size=args.room_size,
        timeout=args.timeout,
        seed=args.seed,
        drop_rate=args.drop_rate,
        progress=bar.advance if bar is not None else None,
    )
    if bar is not None:
        bar.finish()
    print(report.summary())
    return 0 if report.ok else 1


class ProgressBar:
    """A one-line progress bar, redrawn at most every 0.1 s (terminals only)."""

    WIDTH = 40

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.out = out
        self._drawn_at = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._drawn_at >= 0.1:
            self._drawn_at = now
            self._draw()

    def finish(self) -> None:
        self._draw()
        self.out.write("\n")
        self.out.flush()

    def _draw(self) -> None:
        filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.out.write(f"\r[{bar}] {self.done}/{self.total} requests")
        self.out.flush()
