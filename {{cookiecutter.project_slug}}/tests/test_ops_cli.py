"""Operations from the command line: `serve` with metrics and JSON logs, `healthcheck`, `top`.

Every server here is a real `serve` process; `top` is the real command
reading its /metrics, for a few bounded refreshes.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testkit import ServeProcess, free_port

from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
)

PACKAGE = "{{ cookiecutter.package_name }}"
STARTUP_TIMEOUT = 20.0

pytestmark = pytest.mark.usefixtures("isolated")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", PACKAGE, *args]


def run_command(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout)


@contextmanager
def serving(*flags: str) -> Iterator[tuple[ServeProcess, int, int]]:
    """`serve` with metrics in the working directory; yields (process, game port, metrics port)."""
    proc = ServeProcess(Path.cwd(), *flags, metrics=True)
    try:
        proc.start_blocking(STARTUP_TIMEOUT)
        yield proc, proc.port, proc.metrics_port
    finally:
        proc.kill()


def send_bad_frame(port: int) -> None:
    """An undecodable EchoReq (id 9): the server logs a warning naming the link."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall((9).to_bytes(4, "big") + (4).to_bytes(4, "big") + b"nope")
        sock.settimeout(5)
        assert sock.recv(4096)  # the Error reply


def test_json_logs_carry_link_message_peer_and_node_ids() -> None:
    with serving("--log-format", "json", "--log-level", "DEBUG") as (proc, port, _mport):
        send_bad_frame(port)
        code, log = proc.stop(timeout=STARTUP_TIMEOUT)
    assert code == 0, log
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    node = {r.get("node") for r in records}
    assert len(node) == 1 and None not in node  # every line names the node
    bad = [r for r in records if r["level"] == "WARNING" and "msg_id" in r]
    assert bad, records
    assert bad[0]["msg_id"] == 9 and bad[0]["link_id"] >= 1
    assert bad[0]["peer"].startswith("127.0.0.1:")
    opened = [
        r for r in records if r.get("link_id") == bad[0]["link_id"] and "open" in r["message"]
    ]
    assert opened and opened[0]["peer"] == bad[0]["peer"]


def test_top_shows_rates_and_latency_then_exits_cleanly() -> None:
    with serving() as (_proc, port, mport):
        send_bad_frame(port)
        url = f"http://127.0.0.1:{mport}/metrics"
        shown = run_command("top", "--metrics-url", url, "--count", "3", "--interval", "0.2")
        assert shown.returncode == 0, shown.stderr
        assert "EchoReq" in shown.stdout and "rate/s" in shown.stdout and "p99 ms" in shown.stdout
        assert "decode_error 1" in shown.stdout and "links open: tcp" in shown.stdout
        assert shown.stdout.count("Ctrl-C to quit") == 3
        # Ctrl-C while it refreshes: exit 0, no traceback.
        top = subprocess.Popen(
            command("top", "--metrics-url", url, "--interval", "0.2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert top.stdout is not None
        first = []
        for line in top.stdout:  # the first table is on screen: it is refreshing now
            first.append(line)
            if "Ctrl-C to quit" in line:
                break
        top.send_signal(signal.SIGINT)
        _out, err = top.communicate(timeout=10)
    assert top.returncode == 0, err
    assert "EchoReq" in "".join(first) and "Traceback" not in err


def test_top_says_clearly_when_the_server_cannot_be_reached() -> None:
    with socket.socket() as closed:  # bound, never listening: refused, and no one else gets it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        result = run_command("top", "--metrics-url", f"http://127.0.0.1:{port}/metrics")
    assert result.returncode == 1
    assert f"cannot read metrics from http://127.0.0.1:{port}/metrics" in result.stderr
    assert "refused" in result.stderr.lower() and "Traceback" not in result.stderr


def test_healthcheck_fails_when_readyz_is_unreachable() -> None:
    with serving() as (_proc, port, _mport), socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # never listening: /readyz there is refused
        other = closed.getsockname()[1]
        result = run_command(
            "healthcheck", "--port", str(port), "--protocol", "json", "--metrics-port", str(other)
        )
    assert result.returncode == 1
    assert f"unhealthy: http://127.0.0.1:{other}/readyz" in result.stderr


def test_metrics_port_problems_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    same = run_command("serve", "--port", str(port), "--metrics-port", str(port))
    assert same.returncode == 2 and "metrics_port" in same.stderr
    assert "Traceback" not in same.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setenv(f"{ENV_PREFIX}METRICS_HOST", "127.0.0.1")
        result = run_command(
            "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", str(taken)
        )
    assert result.returncode == 1
    assert f"metrics_port {taken}" in result.stderr and "Traceback" not in result.stderr
