"""A server under test, in its own process: ``python -m benchmarks.serve KIND [options]``.

Prints ``READY <port>`` once listening on 127.0.0.1, then serves until
SIGTERM/SIGINT or until stdin closes (so an orchestrator that dies takes its
servers with it). KIND is ``raw``, ``json``, ``streams`` or ``framework``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from .limits import raise_nofile

HOST = "127.0.0.1"
BASELINES = ("raw", "json", "streams")
KINDS = (*BASELINES, "framework")
_BASELINE_MODULES = {"raw": "raw", "json": "json_server", "streams": "streams"}


async def start_baseline(kind: str, port: int) -> tuple[int, Callable[[], Awaitable[None]]]:
    """Start one of the baselines; returns its port and an async closer."""
    module = importlib.import_module(f".baselines.{_BASELINE_MODULES[kind]}", __package__)
    server: asyncio.Server = await module.start(HOST, port)

    async def close() -> None:
        server.close()

    return server.sockets[0].getsockname()[1], close


async def start_framework(args: argparse.Namespace) -> tuple[int, Callable[[], Awaitable[None]]]:
    """Start the generated app exactly as ``serve`` would, with benchmark settings."""
    from .discover import ensure_importable, find_package

    ensure_importable()
    package = find_package()
    app = importlib.import_module(f"{package}.app")
    settings_module = importlib.import_module(f"{package}.settings")
    settings = settings_module.Settings(
        host=HOST,
        port=args.port,
        protocol=args.protocol,
        resource_model=args.model,
        logic_workers=args.logic_workers,
        send_workers=args.send_workers,
        max_connections=args.max_connections,
        idle_timeout=0,
        log_level="WARNING",
    )
    server: Any = app.create_server(settings)
    await server.start()

    async def close() -> None:
        await asyncio.wait_for(server.stop(), 10)

    return server.port, close


async def amain(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    if args.kind == "framework":
        port, close = await start_framework(args)
    else:
        port, close = await start_baseline(args.kind, args.port)
    print(f"READY {port}", flush=True)
    await stop.wait()
    await close()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--protocol", default="json")
    p.add_argument("--model", default="shared_all")
    p.add_argument("--logic-workers", type=int, default=4)
    p.add_argument("--send-workers", type=int, default=2)
    p.add_argument("--max-connections", type=int, default=20_000)
    p.add_argument("--nofile", type=int, default=16_384)
    p.add_argument(
        "--loop", choices=("uvloop", "asyncio"), help="default: asyncio for streams, else uvloop"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    raise_nofile(args.nofile)
    loop = args.loop or ("asyncio" if args.kind == "streams" else "uvloop")
    if loop == "uvloop":
        import uvloop

        uvloop.run(amain(args))
    else:
        asyncio.run(amain(args))


if __name__ == "__main__":
    main()
