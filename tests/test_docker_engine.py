"""The generated Docker setup, run for real: build, compose up, play, stop.

For each case a repo is baked, its image built (on the local base image when
this machine cannot pull), and its compose.yaml started with the port
published on a free 127.0.0.1 port. Once Docker reports the container healthy
(through `<slug> healthcheck` inside it), the baked repo's own client runs the
robot flow from the host against the published port. Then compose stops the
service: the container must exit 0 before the grace period runs out, having
logged the framework's graceful stop.

Marked `docker`; skipped with the reason when no engine answers (run
.ci/docker-prep.sh first, as .ci/run does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker_support import (
    LOCAL_BASE_IMAGE,
    TEMPLATE_DIR,
    Baked,
    bake,
    build_lock,
    compose_command,
    compose_duration,
    docker_unavailable_reason,
    free_port,
    host_pip_build_args,
    image_exists,
    image_id,
    run,
)

yaml = pytest.importorskip("yaml", reason="pyyaml not installed (run .ci/docker-prep.sh)")

pytestmark = pytest.mark.docker

#: (answers, cases id). Different protocols and resource models, and the same
#: project name so both share the dependency layer of one pyproject.toml.
CASES = [
    pytest.param({"protocol": "json", "resource_model": "shared_all"}, id="json-shared_all"),
    pytest.param({"protocol": "protobuf", "resource_model": "per_link"}, id="protobuf-per_link"),
]
PROJECT_NAME = "Dock Smoke"
HEALTHY_WITHIN = 90.0  # seconds: start_period + a few intervals, with slack for 2 busy cores
ROBOTS, REQUESTS = 4, 20


@dataclass(frozen=True)
class Engine:
    compose: list[str]
    base_image: str | None  # None: the Dockerfile's default base is already local


@pytest.fixture(scope="session")
def engine() -> Engine:
    reason = docker_unavailable_reason()
    if reason:
        pytest.skip(reason)
    compose = compose_command()
    if compose is None:
        pytest.skip(
            "no compose: neither `docker compose` nor docker-compose (run .ci/docker-prep.sh)"
        )
    base = os.environ.get("SGS_DOCKER_BASE_IMAGE", LOCAL_BASE_IMAGE)
    if image_exists(base):
        return Engine(compose, base)
    if image_exists("python:3.11-slim-bookworm"):
        return Engine(compose, "python:3.11-slim-bookworm")
    pytest.skip(
        f"no base image: neither {base} nor python:3.11-slim-bookworm is local"
        " (run .ci/docker-prep.sh)"
    )


def build_image(repo: Baked, tag: str, engine: Engine) -> None:
    """docker build with the local base and the host's pip index settings.

    The builder stage is built and tagged first (`<tag>-builder`): the legacy
    builder would otherwise leave it behind untagged on every source change,
    and its layers are the dependency cache the next build reuses. A tag that
    moves drops its previous image, so repeated runs do not pile up images.
    """
    build_args = host_pip_build_args()
    if engine.base_image:
        build_args["PYTHON_IMAGE"] = engine.base_image
    common = ["docker", "build"]
    for key, value in build_args.items():
        common += ["--build-arg", f"{key}={value}"]
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    with build_lock():
        for target, name in (("builder", f"{tag}-builder"), (None, tag)):
            previous = image_id(name)
            stage = ["--target", target] if target else []
            run([*common, *stage, "--tag", name, str(repo.path)], timeout=420, env=env)
            if previous and previous != image_id(name):
                subprocess.run(
                    ["docker", "image", "rm", previous],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )


def install_client(repo: Baked, venv: Path) -> Path:
    """Install the baked repo on the host, the way its README says, into a venv.

    The venv sees the host's site-packages so dependencies already present are
    not downloaded again.
    """
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], timeout=120)
    run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(repo.path)],
        timeout=300,
    )
    client = venv / "bin" / f"{repo.slug}-client"
    assert client.is_file(), f"{client} not installed"
    return client


def readme_client_args(repo: Baked, port: int, protocol: str) -> list[str]:
    """The client command of the README's Docker section, aimed at ``port``.

    `--port` and `--protocol` go right after the README's `--host 127.0.0.1`
    (the same parser takes all three); the robot counts go last.
    """
    readme = (repo.path / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Docker", 1)[1].split("\n## ", 1)[0]
    line = next(ln for ln in section.splitlines() if f"{repo.slug}-client" in ln)
    words = shlex.split(line)
    args = words[next(n for n, w in enumerate(words) if w.endswith(f"{repo.slug}-client")) + 1 :]
    assert "robots" in args and "--host" in args, f"README Docker section: {line!r}"
    at = args.index("--host") + 2
    args[at:at] = ["--port", str(port), "--protocol", protocol]
    return [*args, "--robots", str(ROBOTS), "--requests", str(REQUESTS)]


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", re.MULTILINE)


def scrape(url: str) -> dict[str, float]:
    """/metrics as {'name{labels}': value}, read with the standard library."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {name: float(value) for name, value in SAMPLE.findall(text)}


def inspect(container: str) -> dict:
    proc = run(["docker", "inspect", container], timeout=30)
    return json.loads(proc.stdout)[0]


@contextlib.contextmanager
def compose_up(
    repo: Baked,
    engine: Engine,
    env: dict[str, str],
    project: str,
    *,
    profiles: Sequence[str] = (),
    services: Sequence[str] = (),
) -> Iterator[list[str]]:
    """Start the services; always take them down again (containers, network, volumes)."""
    base = [*engine.compose, "--project-name", project, "--file", "compose.yaml"]
    for profile in profiles:
        base += ["--profile", profile]
    try:
        run(
            [*base, "up", "--detach", "--no-build", *services],
            cwd=repo.path,
            env=env,
            timeout=180,
        )
        yield base
    finally:
        subprocess.run(
            [*base, "down", "--remove-orphans", "--volumes", "--timeout", "5"],
            cwd=repo.path,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def wait_healthy(container: str, deadline: float) -> dict:
    while True:
        state = inspect(container)["State"]
        health = state.get("Health", {}).get("Status")
        if health == "healthy":
            return state
        assert state["Status"] == "running", (
            f"container ended before healthy: {state}\n{logs(container)}"
        )
        assert health != "unhealthy", f"container unhealthy: {state['Health']}\n{logs(container)}"
        assert time.monotonic() < deadline, (
            f"not healthy after {HEALTHY_WITHIN}s: {state}\n{logs(container)}"
        )
        time.sleep(1.0)


def logs(container: str) -> str:
    proc = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, timeout=60, check=False
    )
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("answers", CASES)
def test_compose_service_plays_and_stops_gracefully(
    answers: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    started = time.monotonic()
    repo = bake(tmp_path / "bake", project_name=PROJECT_NAME, python_version="3.11", **answers)
    protocol = answers["protocol"]
    tag = f"sgs-template-test/{repo.slug}:{protocol}"
    build_image(repo, tag, engine)
    client = install_client(repo, tmp_path / "venv")

    service = yaml.safe_load((repo.path / "compose.yaml").read_text(encoding="utf-8"))["services"][
        "game"
    ]
    grace = compose_duration(service["stop_grace_period"])
    port, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(repo.prefix)},
        f"{repo.prefix}IMAGE": tag,
        f"{repo.prefix}PUBLISHED_ADDRESS": "127.0.0.1",
        f"{repo.prefix}PUBLISHED_PORT": str(port),
        f"{repo.prefix}WS_PUBLISHED_PORT": str(free_port()),
        f"{repo.prefix}METRICS_PUBLISHED_PORT": str(metrics_port),
    }
    project = re.sub(r"[^a-z0-9]", "", f"sgstest{protocol}{os.getpid()}")

    with compose_up(repo, engine, env, project) as compose:
        container = run([*compose, "ps", "--quiet", "game"], cwd=repo.path, env=env, timeout=60)
        container_id = container.stdout.strip()
        assert container_id, "compose started no `game` container"
        wait_healthy(container_id, time.monotonic() + HEALTHY_WITHIN)

        uid = run(["docker", "exec", container_id, "id", "-u"], timeout=30).stdout.strip()
        assert uid != "0", "the server must not run as root"
        # compose.yaml's healthcheck passed; the image's own HEALTHCHECK (used
        # by plain `docker run`) must work too, from the container's settings.
        image_check = inspect(tag)["Config"]["Healthcheck"]["Test"]
        assert image_check == ["CMD", repo.slug, "healthcheck"], image_check
        run(["docker", "exec", container_id, *image_check[1:]], timeout=30)

        # The host's client against the published port, run as the generated
        # README's Docker section says, pointed at this test's port and codec.
        command = [str(client), *readme_client_args(repo, port, protocol)]
        flow = run(command, timeout=120, check=False)
        assert flow.returncode == 0, (
            f"{' '.join(command)} failed:\n{flow.stdout}\n{flow.stderr}\n{logs(container_id)}"
        )
        errors = re.search(r"^errors\s+(\d+)", flow.stdout, re.MULTILINE)
        assert errors is None or errors.group(1) == "0", flow.stdout

        # The published metrics port, scraped from the host: the robots' frames are counted.
        metrics = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics['sgs_frames_received_total{message="LoginReq"}'] == ROBOTS, metrics
        assert metrics['sgs_frames_received_total{message="BusinessReq"}'] == ROBOTS * REQUESTS
        assert metrics["sgs_ready"] == 1 and metrics["sgs_links_accepted_total"] >= ROBOTS
        top = run(
            [str(client.with_name(repo.slug)), "top", "--count", "1", "--metrics-url",
             f"http://127.0.0.1:{metrics_port}/metrics"],
            timeout=60,
        )  # fmt: skip
        assert "BusinessReq" in top.stdout, top.stdout

        stop_started = time.monotonic()
        run([*compose, "stop"], cwd=repo.path, env=env, timeout=grace + 60)
        stop_took = time.monotonic() - stop_started

        state = inspect(container_id)
        output = logs(container_id)
        assert state["State"]["Status"] == "exited", state["State"]
        assert state["State"]["ExitCode"] == 0, f"exit {state['State']['ExitCode']}\n{output}"
        assert not state["State"]["OOMKilled"]
        assert state["RestartCount"] == 0, "the server crashed and was restarted"
        assert stop_took < grace, (
            f"stop took {stop_took:.1f}s: SIGKILL after the {grace}s grace period?"
        )
        assert f"protocol={protocol}" in output, (
            "the baked default protocol did not reach the server"
        )
        assert "graceful stop" in output and "stopped" in output, output

    took = time.monotonic() - started
    print(f"{protocol}: built, served and stopped in {took:.1f}s (stop {stop_took:.1f}s)")


# --- the cluster profile and the player-state volume ---------------------------------
#
# Both run the json/shared_all case's image (the same bake, so the build is a
# cache hit) and drive the server with the baked repo's own client library,
# from a script run by the client venv's Python.

REDIS_CONTEXT = TEMPLATE_DIR / "tests" / "docker" / "redis"
REDIS_TAG = "sgs-template-test/redis:debian"
STACK_ANSWERS = {"protocol": "json", "resource_model": "shared_all"}
CLUSTER_CLIENTS = 12  # all on one of two workers: a 1 in 2048 chance, reported as such
PEER_LINE = re.compile(r"^\[worker \d+ pid (\d+)\] .*link \d+ open from \('[^']+', (\d+)\)", re.M)
NODE_LINE = re.compile(
    r"^\[worker (\d+) pid (\d+)\] .*starting with settings: .*node_id=(\S+)", re.M
)

ROOM_SCRIPT = """
import asyncio, json, sys
from {package}.messages import JoinRoomReq, LoginReq, RoomMessage, SayReq, catalog
from {package}.sgs import Client

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

async def main():
    got = {{n: [] for n in range(count)}}
    clients = []
    for n in range(count):
        client = await Client(host, port, protocol="json", catalog=catalog).connect(retries=5)
        client.on(RoomMessage, lambda m, n=n: got[n].append(m.sender + "|" + m.text))
        clients.append(client)
    ports = [c._transport.get_extra_info("sockname")[1] for c in clients]
    members = []
    for n, client in enumerate(clients):
        await client.request(LoginReq(account_id=f"walker{{n}}"), timeout=10)
        members.append(len((await client.request(JoinRoomReq(room="crossing"), timeout=10)).members))
    await asyncio.sleep(1.0)  # memberships reach the other node
    for n, client in enumerate(clients):
        await client.send(SayReq(text=f"hello {{n}}"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while any(len(g) < count for g in got.values()) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    print(json.dumps({{"ports": ports, "members": members, "got": got}}))
    for client in clients:
        await client.close()

asyncio.run(main())
"""

COUNTER_SCRIPT = """
import asyncio, json, sys
from {package}.messages import BusinessReq, LoginReq, catalog
from {package}.sgs import Client

host, port, account, requests = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

async def main():
    async with Client(host, port, protocol="json", catalog=catalog) as client:
        login = await client.request(LoginReq(account_id=account), timeout=10)
        for n in range(requests):
            await client.request(BusinessReq(key=n, value1=n, value2=1), timeout=10)
    print(json.dumps({{"counter_at_login": login.user.counter}}))

asyncio.run(main())
"""


@dataclass(frozen=True)
class Stack:
    """One baked repo, its image, the Redis image and a client venv, shared by a module."""

    repo: Baked
    tag: str
    python: Path

    def drive(self, script: str, *args: object) -> dict:
        """Run a client script (formatted with the package name) from the host; its JSON."""
        code = script.format(package=self.repo.context["package_name"])
        proc = run([str(self.python), "-c", code, *map(str, args)], timeout=120)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def env(self, **extra: str) -> dict[str, str]:
        prefix = self.repo.prefix
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(prefix)},
            f"{prefix}IMAGE": self.tag,
            f"{prefix}REDIS_IMAGE": REDIS_TAG,
            f"{prefix}PUBLISHED_ADDRESS": "127.0.0.1",
            f"{prefix}PUBLISHED_PORT": str(free_port()),
            f"{prefix}WS_PUBLISHED_PORT": str(free_port()),
            f"{prefix}CLUSTER_PUBLISHED_PORT": str(free_port()),
            **{f"{prefix}{k.upper()}": v for k, v in extra.items()},
        }


def build_redis_image(engine: Engine) -> None:
    """Debian's redis-server on the local base image (no registry to pull redis:7-alpine)."""
    args = ["--build-arg", f"BASE_IMAGE={engine.base_image}"] if engine.base_image else []
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    with build_lock():
        run(
            ["docker", "build", *args, "--tag", REDIS_TAG, str(REDIS_CONTEXT)], timeout=420, env=env
        )


@pytest.fixture(scope="module")
def stack(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    work = tmp_path_factory.mktemp("stack")
    repo = bake(work / "bake", project_name=PROJECT_NAME, python_version="3.11", **STACK_ANSWERS)
    tag = f"sgs-template-test/{repo.slug}:{STACK_ANSWERS['protocol']}"
    build_image(repo, tag, engine)
    build_redis_image(engine)
    client = install_client(repo, work / "venv")
    return Stack(repo, tag, client.parent / "python")


def container_of(compose: list[str], stack: Stack, env: dict[str, str], service: str) -> str:
    proc = run([*compose, "ps", "--quiet", service], cwd=stack.repo.path, env=env, timeout=60)
    container = proc.stdout.strip()
    assert container, f"compose started no `{service}` container"
    return container


def test_cluster_profile_carries_a_room_across_worker_processes(
    stack: Stack, engine: Engine
) -> None:
    """Two workers behind one port, Redis between them: a room spans both.

    The clients connect to the container's own address, not the published
    port, so the source port a worker logs for each accepted link is the
    client's: that tells which worker (pid) serves which client.
    """
    env = stack.env(log_level="DEBUG")
    project = f"sgstestcluster{os.getpid()}"
    with compose_up(
        stack.repo, engine, env, project, profiles=["cluster"], services=["game-cluster"]
    ) as compose:
        container = container_of(compose, stack, env, "game-cluster")
        wait_healthy(container, time.monotonic() + HEALTHY_WITHIN)
        running = run(
            [*compose, "ps", "--services", "--filter", "status=running"],
            cwd=stack.repo.path,
            env=env,
            timeout=60,
        )
        assert set(running.stdout.split()) == {"game-cluster", "redis"}, running.stdout
        address = next(iter(inspect(container)["NetworkSettings"]["Networks"].values()))
        result = stack.drive(ROOM_SCRIPT, address["IPAddress"], stack.repo.port, CLUSTER_CLIENTS)
        output = logs(container)

        nodes = {int(pid): node for _, pid, node in NODE_LINE.findall(output)}
        assert len(set(nodes.values())) >= 2, f"two workers with their own node_id:\n{output}"
        owner_of_port = {int(port): int(pid) for pid, port in PEER_LINE.findall(output)}
        owners = [owner_of_port.get(port) for port in result["ports"]]
        assert None not in owners, f"accepts not logged for {result['ports']}:\n{output}"
        assert len(set(owners)) == 2, (
            f"all {CLUSTER_CLIENTS} clients landed on one worker ({owners}); SO_REUSEPORT off?"
        )
        # Needs the Redis cluster: every member hears every other member,
        # those served by the other worker process included.
        crossed, missing = 0, []
        for receiver, heard in result["got"].items():
            for sender in range(CLUSTER_CLIENTS):
                if owners[int(receiver)] == owners[sender]:
                    continue
                if f"walker{sender}|hello {sender}" in heard:
                    crossed += 1
                else:
                    missing.append((sender, int(receiver)))
        assert not missing, (
            f"{len(missing)} cross-node deliveries missing (sender, receiver): {missing[:10]}"
        )
        assert crossed > 0
        # The last to join sees the whole room, whichever node it is on.
        assert result["members"][-1] == CLUSTER_CLIENTS, result["members"]

        run([*compose, "stop"], cwd=stack.repo.path, env=env, timeout=60)
        state = inspect(container)["State"]
        output = logs(container)
        assert state["ExitCode"] == 0, f"exit {state['ExitCode']}\n{output}"
        assert "supervisor stopped: 2 of 2 workers exited 0" in output, output


def test_player_state_survives_compose_down_and_up(stack: Stack, engine: Engine) -> None:
    """Business requests, `down` (volumes kept), `up`, login: the same counter."""
    env = stack.env()
    port = int(env[f"{stack.repo.prefix}PUBLISHED_PORT"])
    project = f"sgstestvolume{os.getpid()}"
    requests = 7
    with compose_up(stack.repo, engine, env, project) as compose:
        container = container_of(compose, stack, env, "game")
        wait_healthy(container, time.monotonic() + HEALTHY_WITHIN)
        # Not the store's doing: the volume on var/ is writable by the server's user.
        run(
            ["docker", "exec", container, "sh", "-c", "test -w var && touch var/.probe"], timeout=30
        )
        first = stack.drive(COUNTER_SCRIPT, "127.0.0.1", port, "keeper", requests)
        assert first["counter_at_login"] == 0, first

        run([*compose, "down", "--timeout", "15"], cwd=stack.repo.path, env=env, timeout=120)
        volumes = run(["docker", "volume", "ls", "--quiet"], timeout=30).stdout.split()
        assert f"{project}_game-data" in volumes, volumes

        run([*compose, "up", "--detach", "--no-build"], cwd=stack.repo.path, env=env, timeout=180)
        container = container_of(compose, stack, env, "game")
        wait_healthy(container, time.monotonic() + HEALTHY_WITHIN)
        run(["docker", "exec", container, "test", "-f", "var/.probe"], timeout=30)
        # Needs the player-state store (SQLite in var/): the counter came back.
        again = stack.drive(COUNTER_SCRIPT, "127.0.0.1", port, "keeper", 0)
        assert again["counter_at_login"] == requests, (again, logs(container))
