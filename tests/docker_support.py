"""Helpers shared by the Docker tests: baking, tool lookup, engine probing.

Kept out of the test modules so the static tests (always run) and the engine
tests (need dockerd) read as lists of checks, and so neither needs a conftest
of its own (tests/conftest.py belongs to the template's general suite).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).resolve().parents[1]

#: The base image docker-local-base.sh builds for machines without registry access.
LOCAL_BASE_IMAGE = "sgs-local/python:3.11-slim"

#: Debian releases a `-slim-<codename>` Python tag may pin (current and next).
DEBIAN_CODENAMES = ("bookworm", "trixie")


@dataclass(frozen=True)
class Baked:
    """A generated repo and the answers that shaped it."""

    path: Path
    context: dict[str, Any]

    @property
    def slug(self) -> str:
        return str(self.context["project_slug"])

    @property
    def prefix(self) -> str:
        """The settings' environment prefix, e.g. ``MY_GAME_SERVER_``."""
        return str(self.context["package_name"]).upper() + "_"

    @property
    def port(self) -> int:
        return int(self.context["server_port"])


def bake(output_dir: Path, **answers: Any) -> Baked:
    """Generate a repo with cookiecutter's Python API, no prompts."""
    from cookiecutter.main import cookiecutter

    output_dir.mkdir(parents=True, exist_ok=True)
    # A private config: parallel workers never share replay files or a user's
    # ~/.cookiecutterrc.
    private = output_dir / ".cookiecutter-config"
    private.mkdir(exist_ok=True)
    config = private / "cookiecutterrc.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(private / 'cookiecutters'))}\n"
        f"replay_dir: {json.dumps(str(private / 'replay'))}\n",
        encoding="utf-8",
    )
    path = Path(
        cookiecutter(
            str(TEMPLATE_DIR),
            no_input=True,
            extra_context=dict(answers),
            output_dir=str(output_dir),
            config_file=str(config),
        )
    )
    context = json.loads((path / ".cookiecutter.json").read_text(encoding="utf-8"))
    return Baked(path=path, context=context.get("cookiecutter", context))


def find_tool(name: str) -> str | None:
    """A console script on PATH or beside the running interpreter (venv installs)."""
    candidates = [
        Path(sys.executable).parent / name,
        Path(sysconfig.get_path("scripts")) / name,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def run(
    cmd: list[str], *, timeout: float, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command with a hard time limit; on failure show what it printed."""
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def docker_unavailable_reason() -> str | None:
    """Why the engine tests cannot run here, or None when dockerd answers."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI on PATH (run .ci/docker-prep.sh)"
    try:
        proc = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if proc.returncode != 0 or not proc.stdout.strip():
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers ({detail}); run .ci/docker-prep.sh"
    return None


def compose_command() -> list[str] | None:
    """`docker compose` (v2) when installed, else Debian's `docker-compose` (v1)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=20, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    v1 = shutil.which("docker-compose")
    return [v1] if v1 else None


def image_exists(image: str) -> bool:
    proc = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, timeout=30, check=False
    )
    return proc.returncode == 0


def image_id(image: str) -> str | None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def host_pip_build_args() -> dict[str, str]:
    """pip's index settings on this host, as Dockerfile build arguments.

    pip in the build must reach the package index the way the host's pip does,
    without any index host name written into the repo: read `pip config list`
    (files and PIP_* variables) now. Only http(s) locations are passed on: a
    file:// index or a find-links folder on the host does not exist inside a
    build.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        match = re.fullmatch(r"[^.]+\.([a-z-]+)='(.*)'", line.strip())
        if match:
            found.setdefault(match.group(1), match.group(2))
    args: dict[str, str] = {}
    for key, arg in (("index-url", "PIP_INDEX_URL"), ("extra-index-url", "PIP_EXTRA_INDEX_URL")):
        urls = [u for u in found.get(key, "").split() if u.startswith(("http://", "https://"))]
        if urls:
            args[arg] = " ".join(urls)
    if found.get("trusted-host"):
        args["PIP_TRUSTED_HOST"] = found["trusted-host"]
    return args


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for compose to publish)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """Serialise image builds across xdist workers.

    Two concurrent builds of the same dependency layer would both compute it
    on two cores; one after the other, the second reuses the first's layers.
    """
    path = Path(tempfile.gettempdir()) / "sgs-template-docker-build.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(h|ms|m|s|us))")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}


def compose_duration(value: str | int | float) -> float:
    """Seconds in a compose duration such as ``15s`` or ``1m30s``."""
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a compose duration: {value!r}")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Resolve ``${VAR}`` / ``${VAR:-default}`` the way compose does (one level)."""

    def replace(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        return value if value else (match.group(2) or "")

    return _INTERPOLATION.sub(replace, text)
