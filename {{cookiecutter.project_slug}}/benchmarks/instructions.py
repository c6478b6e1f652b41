"""Instructions per message, counted by valgrind: a figure that noise cannot move.

``python -m benchmarks --instructions`` (or ``python -m benchmarks.instructions``)

Wall-clock ratios on a shared or throttled machine swing by tens of percent
from one run to the next; the number of instructions a server executes per
message does not. This mode runs each server's hot path in one process: 50
links, each read carrying 8 pipelined requests, delivered to
``data_received`` through a stand-in transport that keeps what is written
(no kernel, no load process), and checks every reply byte for byte against
the same expected frames the load generator uses. Each case runs twice under
callgrind with different round counts; the difference divided by the
messages between them is the cost of one message, with start-up and imports
cancelled out.

Besides the framework and the ``json`` baseline (the same game logic by
hand), the ``messages`` column counts only what decoding and validating a
request, building the reply and encoding it cost (msgspec, through the app's
own message classes). It is the floor under the framework's figure: the
baseline divided by it is the best ratio any dispatch code could reach.

Needs valgrind (``apt-get install valgrind``); the kernel's share of a real
socket (about a fifth of the server's CPU in ``echo_throughput``) is not in
these figures, so a ratio here is a little wider than the same ratio in a
load run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .discover import ensure_importable, find_package, import_path_env
from .jobs import Step
from .serve import LIMITS
from .workloads import CodecBytes, JsonBaselineBytes, business_cycle, echo_cycle, login_step

LINKS = 50
DEPTH = 8
FLOWS = ("echo", "business")
SERVERS = ("framework", "json", "messages", "resume")
PROTOCOLS = ("json", "protobuf", "msgpack", "bson")
RESULTS = Path(__file__).resolve().parent / "results"
_COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")


def _groups(flow: str, enc: Any) -> list[list[Step]]:
    """The load generator's request cycle, cut into reads of DEPTH requests."""
    cycle = echo_cycle(enc) if flow == "echo" else business_cycle(enc)
    return [cycle[i : i + DEPTH] for i in range(0, len(cycle), DEPTH)]


async def _exercise(
    links: list[tuple[Any, Any]], enc: Any, flow: str, rounds: int, arm: bool = False
) -> int:
    """Log each link in (business), deliver ``rounds`` reads to each, check every reply.

    ``links`` pairs each connection's ``data_received`` owner with the
    stand-in transport it writes to. The loop turns between rounds, so
    work handed to worker and writer tasks is done within the round.
    """
    groups = _groups(flow, enc)
    reads = [b"".join(step.request for step in group) for group in groups]
    replies = [b"".join(step.expected or b"" for step in group) for group in groups]
    logins = [b""] * len(links)
    if flow == "business":
        for i, (proto, _) in enumerate(links):
            login = login_step(enc, f"bench-{i:05d}")
            proto.data_received(login.request)
            logins[i] = login.expected or b""
        for _ in range(20):  # the framework's login handler awaits the store
            await asyncio.sleep(0.001)
        if arm:  # as a client's empty ResumeReq does: every reply is numbered and kept
            for link, _ in links:
                ring = link.server.resumer.arm(link).ring
                # A full ring from the first read: the steady state, where every
                # flush also lets the oldest frames go (a deque's popleft costs
                # the same whatever the ring's size, so a small one is fair).
                ring.max_count = DEPTH * 2
    feeds = [proto.data_received for proto, _ in links]
    for r in range(rounds):
        data = reads[r % len(reads)]
        for feed in feeds:
            feed(data)
        for _ in range(3):  # the worker and writer tasks, when a read was handed to them
            await asyncio.sleep(0)
    expected = b"".join(replies[r % len(replies)] for r in range(rounds))
    for i, (_, transport) in enumerate(links):
        got = bytes(transport.data)
        if got != logins[i] + expected:
            raise SystemExit(
                f"link {i}: replies differ from the expected frames"
                f" ({len(got)} bytes, expected {len(logins[i]) + len(expected)})"
            )
    return rounds * len(links) * DEPTH


async def _framework(package: str, flow: str, protocol: str, rounds: int, arm: bool = False) -> int:
    app = importlib.import_module(f"{package}.app")
    settings = importlib.import_module(f"{package}.settings").Settings(
        host="127.0.0.1",
        port=0,
        protocol=protocol,
        idle_timeout=0,
        log_level="WARNING",
        store_url="memory://",
        ws_port=0,
        metrics_port=0,
        **LIMITS["off"],
    )
    testing = importlib.import_module(f"{package}.sgs.testing")
    server = app.create_server(settings)
    await server.start()
    links = [testing.stand_in_link(server) for _ in range(LINKS)]
    n = await _exercise(links, CodecBytes(package, protocol), flow, rounds, arm)
    for link, _ in links:  # the peers hang up, so the server stops without a drain timeout
        link.connection_lost(None)
    await server.stop()
    return n


async def _baseline(package: str, flow: str, rounds: int) -> int:
    from .baselines.game import Game
    from .baselines.json_server import JsonProtocol

    testing = importlib.import_module(f"{package}.sgs.testing")
    game = Game()
    links = []
    for _ in range(LINKS):
        proto, transport = JsonProtocol(), testing.StandInTransport()
        proto.game = game
        proto.connection_made(transport)
        links.append((proto, transport))
    return await _exercise(links, JsonBaselineBytes(), flow, rounds)


def _messages(package: str, flow: str, rounds: int) -> int:
    """Decode and validate each request, build its reply, encode it: nothing else."""
    import msgspec

    messages = importlib.import_module(f"{package}.messages")
    echo = flow == "echo"
    req, resp = (
        (messages.EchoReq, messages.EchoResp)
        if echo
        else (messages.BusinessReq, messages.BusinessResp)
    )
    decode = msgspec.json.Decoder(req, strict=False).decode
    encode = msgspec.json.Encoder().encode
    values = [[step.request[8:] for step in group] for group in _groups(flow, JsonBaselineBytes())]
    n = 0
    for r in range(rounds * LINKS):
        for value in values[r % len(values)]:
            msg = decode(value)
            if echo:
                encode(resp(text=msg.text))
            else:
                encode(resp(key=msg.key, result=msg.value1 + msg.value2))
            n += 1
    return n


def child(flow: str, server: str, protocol: str, rounds: int) -> None:
    """One measured process (run under valgrind by :func:`count`)."""
    ensure_importable()
    package = find_package()
    if server == "messages":
        n = _messages(package, flow, rounds)
    else:
        import uvloop

        uvloop.install()
        if server in ("framework", "resume"):
            n = asyncio.run(_framework(package, flow, protocol, rounds, server == "resume"))
        else:
            n = asyncio.run(_baseline(package, flow, rounds))
    print(f"MESSAGES {n}", flush=True)


def _instructions(flow: str, server: str, protocol: str, rounds: int) -> tuple[int, int]:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        flow,
        server,
        protocol,
        str(rounds),
    ]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        cmd, cwd=root, env=import_path_env(), capture_output=True, text=True, timeout=900
    )
    found = _COLLECTED.search(done.stderr)
    messages = re.search(r"MESSAGES (\d+)", done.stdout)
    if done.returncode != 0 or found is None or messages is None:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise RuntimeError(f"{flow} {server} {protocol}: " + " | ".join(tail))
    return int(found.group(1).replace(",", "")), int(messages.group(1))


def count(todo: list[tuple[str, str, str]], rounds: int) -> dict[tuple[str, str, str], float]:
    """Instructions per message of each case: runs of ``rounds // 5`` and ``rounds``, differenced.

    Every run is a process of its own, so they all go side by side, one per CPU.
    """
    small = max(1, rounds // 5)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        runs = {
            (case, n): pool.submit(_instructions, *case, n)
            for case in todo
            for n in (small, rounds)
        }
        done = {key: future.result() for key, future in runs.items()}
    out = {}
    for case in todo:
        (ir_small, n_small), (ir_big, n_big) = done[case, small], done[case, rounds]
        out[case] = (ir_big - ir_small) / (n_big - n_small)
    return out


def cases(protocols: list[str], flows: list[str], servers: list[str]) -> list[tuple[str, str, str]]:
    """Every server on json for each flow; the other protocols on echo, framework only."""
    out = []
    for flow in flows:
        # Resumption needs a login: the "resume" server (links armed) runs business only.
        out += [
            (flow, server, "json") for server in servers if server != "resume" or flow == "business"
        ]
        if flow == "echo" and "framework" in servers:
            out += [(flow, "framework", p) for p in protocols if p != "json"]
    return out


def _choice(
    p: argparse.ArgumentParser, option: str, text: str, known: tuple[str, ...]
) -> list[str]:
    chosen = [x for x in text.split(",") if x]
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        p.error(f"{option}: unknown {unknown or text!r}; choose from {', '.join(known)}")
    return chosen


def render(results: dict[tuple[str, str, str], float]) -> str:
    lines = [
        "## Instructions per message (valgrind, in-process, 50 links x 8 frames per read)",
        "",
        "| flow | protocol | framework | json baseline | messages alone | baseline / framework"
        " | ceiling: baseline / messages |",
        "|---|---|---|---|---|---|---|",
    ]
    for (flow, server, protocol), ir in results.items():
        if server != "framework":
            continue
        base = results.get((flow, "json", "json"))
        floor = results.get((flow, "messages", "json"))
        ratio = f"{base / ir:.2f}x" if base and protocol == "json" else ""
        ceiling = f"{base / floor:.2f}x" if base and floor and protocol == "json" else ""
        if protocol != "json":
            fw_json = results.get((flow, "framework", "json"))
            ratio = f"{fw_json / ir:.2f}x of the framework's json" if fw_json else ""
        cells = [
            flow,
            protocol,
            f"{ir:,.0f}",
            f"{base:,.0f}" if base and protocol == "json" else "",
            f"{floor:,.0f}" if floor and protocol == "json" else "",
            ratio,
            ceiling,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    armed = results.get(("business", "resume", "json"))
    plain = results.get(("business", "framework", "json"))
    if armed and plain:
        lines += [
            "",
            f"Links armed for resumption (business, json): {armed:,.0f} per message,"
            f" {plain / armed:.2f}x of resumption off (target >= 0.95x: numbering and"
            " keeping every reply for a replay).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    p.add_argument("--child", nargs=4, metavar=("FLOW", "SERVER", "PROTOCOL", "ROUNDS"))
    p.add_argument("--flows", default=",".join(FLOWS), help="echo,business")
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="framework,json,messages,resume (the framework with links armed for resumption)",
    )
    p.add_argument("--protocols", default="json,protobuf,msgpack", help="the framework's, on echo")
    p.add_argument("--rounds", type=int, default=50, help="reads per link in the longer run")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.child:
        flow, server, protocol, rounds = args.child
        child(flow, server, protocol, int(rounds))
        return 0
    todo = cases(
        _choice(p, "--protocols", args.protocols, PROTOCOLS),
        _choice(p, "--flows", args.flows, FLOWS),
        _choice(p, "--servers", args.servers, SERVERS),
    )
    if shutil.which("valgrind") is None:
        print("--instructions needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    started = time.time()
    results = count(todo, args.rounds)
    text = render(results)
    text += f"\n{len(todo)} cases in {time.time() - started:.0f} s, {args.rounds} rounds.\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "instructions.md").write_text(text, encoding="utf-8")
    rows = [
        {"flow": f, "server": s, "protocol": pr, "instructions_per_message": round(ir)}
        for (f, s, pr), ir in results.items()
    ]
    (args.out / "instructions.json").write_text(json.dumps(rows, indent=2) + "\n", "utf-8")
    print(text)
    print(f"written: {args.out / 'instructions.md'}, {args.out / 'instructions.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
