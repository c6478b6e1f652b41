"""A server under test, in its own process: ``python -m benchmarks.serve KIND [options]``.

Prints ``READY <port>`` once listening on 127.0.0.1, then serves until
SIGTERM/SIGINT or until stdin closes (so an orchestrator that dies takes its
servers with it). KIND is ``raw``, ``json``, ``streams`` or ``framework``.

A ``stats`` line on stdin is answered with one ``STATS {json}`` line on stdout:
the framework's counters (``store``: the player-state store's StoreStats,
``cluster``: this node's ClusterStats, ``server``: accepted/closed...,
``runtime``: open links, asyncio tasks, queued bytes, RSS), read on the event
loop. The orchestrator asks at the start and the end of the measured
window and reports the difference; baselines answer ``STATS {}``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, is_dataclass
from typing import Any

from .limits import raise_nofile

HOST = "127.0.0.1"
BASELINES = ("raw", "json", "streams")
KINDS = (*BASELINES, "framework")
_BASELINE_MODULES = {"raw": "raw", "json": "json_server", "streams": "streams"}


Started = tuple[int, Callable[[], Awaitable[None]], Callable[[], dict[str, Any]]]


def _counters(obj: Any) -> dict[str, Any]:
    """A stats object as a plain dict (``as_dict()``, a dataclass, or its public int fields)."""
    if obj is None:
        return {}
    if hasattr(obj, "as_dict"):
        return dict(obj.as_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return {k: v for k, v in vars(obj).items() if isinstance(v, int) and not k.startswith("_")}


def runtime(server: Any) -> dict[str, int]:
    """What must come back to its starting level after load: links, tasks, queued bytes, RSS."""
    links = list(server.links.values())
    rss_kb = 0
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "links": len(links),
        "tasks": len(asyncio.all_tasks()),
        "queued_bytes": sum(link.out_bytes + link.rbuf_bytes for link in links),
        "rss_kb": rss_kb,
    }


async def start_baseline(kind: str, port: int) -> Started:
    """Start one of the baselines; returns its port and an async closer."""
    module = importlib.import_module(f".baselines.{_BASELINE_MODULES[kind]}", __package__)
    server: asyncio.Server = await module.start(HOST, port)

    async def close() -> None:
        server.close()

    return server.sockets[0].getsockname()[1], close, dict


#: The hostile-client limits. "off" (every case but one): the baselines have
#: none, and a load generator at full speed would meet them. "checked": every
#: limit on and checked on each read, but set too high to bite, which is
#: what the hot path pays for them (the "limits" variant).
LIMITS: dict[str, dict[str, Any]] = {
    "off": {
        "rate_limit_messages": 0,
        "rate_limit_bytes": 0,
        "max_connections_per_ip": 0,
        "accept_rate": 0,
        "frame_timeout": 0,
        "chat_rate_limit": 0,
        "auth_timeout": 0,
    },
    "default": {},  # the settings' own defaults: what `serve` runs with (make soak)
    "checked": {
        "rate_limit_messages": 1e9,
        "rate_limit_messages_burst": 10**9,
        "rate_limit_bytes": 10**12,
        "rate_limit_bytes_burst": 10**12,
        "max_connections_per_ip": 10**6,
        "accept_rate": 1e9,
        "accept_burst": 10**9,
        "frame_timeout": 60,
        "chat_rate_limit": 1e9,
        "chat_rate_burst": 10**9,
        "auth_timeout": 3600,
    },
}


async def start_framework(args: argparse.Namespace) -> Started:
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
        # Each case starts from empty player state unless it asks for a store.
        store_url=args.store_url,
        store_sync=args.store_sync,
        # A cluster node when set: rooms and logins span every node on that Redis.
        cluster_url=args.cluster_url,
        **LIMITS[args.limits],
        # WebSocket only when measured (--ws): the TCP cases run without it.
        ws_port=_free_port() if args.ws else 0,
        ws_ping_interval=0,
        # /metrics on a free port when asked (the metrics_echo case), else off.
        metrics_port=_free_port() if args.metrics else 0,
        metrics_host=HOST,
        resume_window=args.resume_window,
    )
    server: Any = app.create_server(settings)
    await server.start()

    async def close() -> None:
        await asyncio.wait_for(server.stop(), 10)

    def stats() -> dict[str, Any]:
        cluster = getattr(server, "cluster", None)
        return {
            "store": _counters(getattr(server, "store", None) and server.store.stats),
            "cluster": _counters(getattr(cluster, "stats", None)),
            "server": _counters(getattr(server, "stats", None)),
            "runtime": runtime(server),
        }

    return (server.ws_port if args.ws else server.port), close, stats


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


async def amain(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if args.kind == "framework":
        port, close, stats = await start_framework(args)
    else:
        port, close, stats = await start_baseline(args.kind, args.port)

    def answer_stats() -> None:
        print("STATS " + json.dumps(stats()), flush=True)

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stats":
                loop.call_soon_threadsafe(answer_stats)
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
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
    p.add_argument("--store-url", default="memory://", help="player-state store of the server")
    p.add_argument("--store-sync", default="write_behind", choices=("write_behind", "always"))
    p.add_argument("--cluster-url", default="", help="redis://127.0.0.1:PORT/0: a cluster node")
    p.add_argument("--limits", default="off", choices=tuple(LIMITS), help="see LIMITS")
    p.add_argument(
        "--metrics", action="store_true", help="serve /metrics on a free port (metrics_port)"
    )
    p.add_argument(
        "--resume-window", type=float, default=30.0, help="resume_window (0: resumption off)"
    )
    p.add_argument("--nofile", type=int, default=16_384)
    p.add_argument(
        "--ws", action="store_true", help="framework: serve WebSocket, READY gives its port"
    )
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
