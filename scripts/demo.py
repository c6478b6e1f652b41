"""`make demo`: bake the default project, install it, serve it, talk to it, stop it.

Every step is what a user would type (the generated README's way): bake with
cookiecutter --no-input into build/demo, `make install` in the baked repo,
`<slug> serve`, `<slug> healthcheck`, `<slug>-client ping/echo/robots`, then
SIGTERM and check the server exited 0. Exits non-zero on the first failure.
Run with the interpreter of build/.venv (which has cookiecutter).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "demo"
HEALTH_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
ROBOTS = ["robots", "--robots", "5", "--requests", "20"]


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def fail(message: str) -> int:
    print(f"\nmake demo FAILED: {message}", file=sys.stderr, flush=True)
    return 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def user_env() -> dict[str, str]:
    """The caller's environment minus this venv, so the baked repo builds its own."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def bake() -> Path:
    existing = OUT / "my-game-server"
    if existing.exists():
        shutil.rmtree(existing)
    OUT.mkdir(parents=True, exist_ok=True)
    config = OUT / ".cookiecutterrc.yaml"
    config.write_text(
        f'cookiecutters_dir: "{OUT / ".cookiecutters"}"\nreplay_dir: "{OUT / ".replay"}"\n',
        encoding="utf-8",
    )
    return Path(
        cookiecutter(str(ROOT), no_input=True, output_dir=str(OUT), config_file=str(config))
    )


def run_shown(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> int:
    """Run a command in front of the user, its output streamed."""
    print("$ " + " ".join(args), flush=True)
    return subprocess.run(args, cwd=cwd, env=env, timeout=timeout, check=False).returncode


def wait_healthy(bin_dir: Path, slug: str, port: int, server: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        check = subprocess.run(
            [str(bin_dir / slug), "healthcheck", "--port", str(port), "--timeout", "2"],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode == 0:
            print(check.stdout.strip(), flush=True)
            return True
        time.sleep(0.3)
    return False


def main() -> int:
    env = user_env()
    step("bake the default project into build/demo (cookiecutter --no-input)")
    project = bake()
    slug = project.name
    print(f"baked {project.relative_to(ROOT)}", flush=True)

    step(
        "install it the README way: make install (.venv from the hashed lock requirements/dev.txt)"
    )
    quiet = {**env, "PIP_QUIET": "1"}  # pip's progress would drown the exchange below
    if run_shown(["make", "install"], cwd=project, env=quiet, timeout=900) != 0:
        return fail("make install failed in the baked repo")
    bin_dir = project / ".venv" / "bin"
    port = free_port()
    client = str(bin_dir / f"{slug}-client")
    target = ["--host", "127.0.0.1", "--port", str(port)]

    step(f"start the server: {slug} serve --host 127.0.0.1 --port {port}")
    log_path = OUT / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(bin_dir / slug), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if not wait_healthy(bin_dir, slug, port, server):
            return fail(f"server never became healthy; log:\n{log_path.read_text()}")

        step("talk to it: ping, echo, then the robot flow")
        for args in (["ping"], ["echo", "hello from make demo"], ROBOTS):
            # `<slug>-client robots --host H --port P ...`, the README's form
            command = [client, args[0], *target, *args[1:]]
            if run_shown(command, cwd=project, env=env) != 0:
                return fail(f"{slug}-client {args[0]} failed")

        step("stop the server with SIGTERM")
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=STOP_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    print(f"server log ({log_path.relative_to(ROOT)}):", flush=True)
    print(
        "  " + log_path.read_text(encoding="utf-8", errors="replace").strip().replace("\n", "\n  ")
    )
    if code != 0:
        return fail(f"server exited with {code} after SIGTERM (expected 0)")
    step(f"done: the server stopped gracefully (exit 0). Try it yourself: cd {project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
