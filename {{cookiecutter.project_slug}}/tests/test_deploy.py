"""deploy/: the Kubernetes and Agones manifests, checked offline and against the code.

No cluster runs here, so the checks are exact instead: ``kubectl kustomize``
renders every overlay, each rendered object validates against the Kubernetes
schema of the versions below (kubernetes-validate), the Agones objects against
``agones_schema.yaml`` (written from Agones' documented fields, closed so a
misspelt field fails), yamllint is clean, and the manifests agree with the
server: its ports, probe paths, settings, drain time and image name.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from testkit import free_port

from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    Settings,
)
from {{ cookiecutter.package_name }}.sgs.metrics.scrape import (
    http_get,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PACKAGE = "{{ cookiecutter.package_name }}"
SLUG = "{{ cookiecutter.project_slug }}"
# The oldest Kubernetes these manifests are written for, and the newest whose
# schema kubernetes-validate ships: every object must be valid in both.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
OVERLAYS = ("overlays/dev", "overlays/prod", "agones")
AGONES_GROUPS = ("agones.dev/", "autoscaling.agones.dev/", "allocation.agones.dev/")
AGONES_SCHEMA = yaml.safe_load((Path(__file__).parent / "agones_schema.yaml").read_text("utf-8"))


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        reason = "no kubectl on PATH (it renders the kustomize overlays)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)
    return path


@functools.cache
def _render(overlay: str) -> str:
    done = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / overlay)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay}:\n{done.stderr}"
    return done.stdout


def rendered(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(_render(overlay)) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def is_agones(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].startswith(AGONES_GROUPS)


def game_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == "game")


def fleet_pod_spec(fleet: dict[str, Any]) -> dict[str, Any]:
    return fleet["spec"]["template"]["spec"]["template"]["spec"]


def pod_templates(overlay: str) -> list[dict[str, Any]]:
    """Every pod spec the overlay would run, with the game's first."""
    specs = []
    for obj in rendered(overlay):
        if obj["kind"] == "Fleet":
            specs.append(fleet_pod_spec(obj))
        elif obj["kind"] in ("Deployment", "StatefulSet"):
            specs.append(obj["spec"]["template"]["spec"])
    return specs


def allocation_example() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "agones" / "gameserverallocation.yaml").read_text("utf-8"))


def game_environment(overlay: str) -> dict[str, str]:
    """What the game container's environment holds (ConfigMap, plain values), secrets aside."""
    objects = rendered(overlay)
    if overlay == "agones":
        container = game_container(fleet_pod_spec(one(objects, "Fleet")))
    else:
        container = game_container(one(objects, "Deployment")["spec"]["template"]["spec"])
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def settings_of(overlay: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in game_environment(overlay).items():
        monkeypatch.setenv(name, value)
    return Settings()


# --- rendering and schemas -------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders(overlay: str) -> None:
    kinds = sorted(o["kind"] for o in rendered(overlay))
    expected = {
        "overlays/dev": [
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "Service",
            "Service",
            "StatefulSet",
        ],
        "overlays/prod": [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Service",
            "Service",
        ],
        "agones": ["Fleet", "FleetAutoscaler"],
    }
    assert kinds == expected[overlay]
    for obj in rendered(overlay):
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == SLUG


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_objects_validate(overlay: str, version: str) -> None:
    for obj in rendered(overlay):
        if is_agones(obj):  # tests/agones_schema.yaml checks these
            if obj["kind"] != "Fleet":
                continue
            # The pod template inside is core/v1: validated as a PodTemplate.
            template = obj["spec"]["template"]["spec"]["template"]
            obj = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "t"},
                "template": template,
            }
        kubernetes_validate.validate(obj, version, strict=True)


def test_a_misspelt_kubernetes_field_fails_validation() -> None:
    deployment = copy.deepcopy(one(rendered("overlays/dev"), "Deployment"))
    game_container(deployment["spec"]["template"]["spec"])["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_agones_objects_match_the_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(AGONES_SCHEMA)
    validator = jsonschema.Draft202012Validator(AGONES_SCHEMA)
    objects = [*rendered("agones"), allocation_example()]
    assert {o["kind"] for o in objects} == {"Fleet", "FleetAutoscaler", "GameServerAllocation"}
    # What the Fleet makes of its template: a GameServer (`kubectl create` would take it too).
    template = one(objects, "Fleet")["spec"]["template"]
    gameserver = {"apiVersion": "agones.dev/v1", "kind": "GameServer", **template}
    objects.append(gameserver | {"metadata": {"name": "one", **template["metadata"]}})
    for obj in objects:
        errors = [e.message for e in validator.iter_errors(obj)]
        assert not errors, f"{obj['kind']}: {errors}"


@pytest.mark.parametrize(
    ("kind", "path", "typo"),
    [
        ("Fleet", ("spec", "template", "spec", "ports", 0), "portPolicyy"),
        ("Fleet", ("spec", "template", "spec", "health"), "periodSecond"),
        ("Fleet", ("spec",), "schedulng"),
        ("FleetAutoscaler", ("spec", "policy", "buffer"), "buffersize"),
        ("GameServerAllocation", ("spec", "selectors", 0), "matchLabel"),
    ],
)
def test_a_misspelt_agones_field_fails_the_schema(
    kind: str, path: tuple[Any, ...], typo: str
) -> None:
    objects = {o["kind"]: o for o in [*rendered("agones"), allocation_example()]}
    obj = copy.deepcopy(objects[kind])
    node = obj
    for key in path:
        node = node[key]
    node[typo] = 1
    errors = list(jsonschema.Draft202012Validator(AGONES_SCHEMA).iter_errors(obj))
    assert errors, f"{kind}: {typo} passed the schema"


def test_yamllint_is_clean() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "--strict",
            "-c",
            str(ROOT / ".yamllint.yaml"),
            str(DEPLOY),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- the manifests agree with the server ---------------------------------------------


def listening_ports() -> set[int]:
    """TCP ports this process listens on (Linux: its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="reads Linux /proc")
@pytest.mark.parametrize("overlay", ["overlays/prod", "agones"])
async def test_every_port_the_server_opens_is_declared(
    overlay: str, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(overlay, monkeypatch)
    objects = rendered(overlay)
    if overlay == "agones":
        fleet = one(objects, "Fleet")
        container = game_container(fleet_pod_spec(fleet))
        agones_ports = fleet["spec"]["template"]["spec"]["ports"]
        declared = {p["containerPort"] for p in container["ports"] + agones_ports}
        assert {p["portPolicy"] for p in agones_ports} == {"Dynamic"}
    else:
        container = game_container(one(objects, "Deployment")["spec"]["template"]["spec"])
        declared = {p["containerPort"] for p in container["ports"]}
    configured = {settings.port, settings.ws_port, settings.metrics_port} - {0}
    assert declared == configured
    # The real server, on free ports standing for the configured ones, opens
    # exactly that many listeners (an undeclared listener would show here).
    before = listening_ports()
    overrides = {"port": 0, "ws_port": 0 if not settings.ws_port else free_port()}
    overrides |= {"metrics_port": free_port(), "agones": False}
    async with running_server(settings=settings, **overrides) as server:
        opened = listening_ports() - before
        expected = {server.port, server.ws_port, server.metrics.address[1]} - {None, 0}  # type: ignore[index]
        assert opened == expected


async def test_probe_paths_exist_on_the_metrics_port(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of("overlays/dev", monkeypatch)
    container = game_container(
        one(rendered("overlays/dev"), "Deployment")["spec"]["template"]["spec"]
    )
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = [container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]]
    assert [p["path"] for p in probes] == ["/readyz", "/healthz"]
    assert {ports[p["port"]] for p in probes} == {settings.metrics_port}
    async with running_server(settings=settings, metrics_port=free_port(), ws_port=0) as server:
        port = server.metrics.address[1]  # type: ignore[index]
        for probe in probes:
            url = f"http://127.0.0.1:{port}{probe['path']}"
            status, _ = await asyncio.to_thread(http_get, url, 5)
            assert status == 200, probe


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_covers_the_pause_and_the_drain(
    overlay: str, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(overlay, monkeypatch)
    pod = pod_templates(overlay)[0]
    container = game_container(pod)
    pause = 0.0
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if pre_stop:
        assert pre_stop[0] == "sleep", pre_stop
        pause = float(pre_stop[1])
    # After the drain the store flushes and Agones hears Shutdown: a few seconds more.
    assert pod["terminationGracePeriodSeconds"] >= pause + settings.drain_timeout + 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_configured_setting_is_a_real_setting(
    overlay: str, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = json.loads(
        subprocess.run(
            [sys.executable, "-m", PACKAGE, "print-config", "--json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )["settings"]
    env_names = {entry["env"]: name for name, entry in known.items()}
    pod = pod_templates(overlay)[0]
    container = game_container(pod)
    names = set(game_environment(overlay)) | {e["name"] for e in container.get("env", [])}
    prefixed = {n for n in names if n.startswith(ENV_PREFIX)}
    assert prefixed == names, f"not settings: {names - prefixed}"
    assert not prefixed - set(env_names), f"unknown settings: {prefixed - set(env_names)}"
    # And the values are valid: the server starts from exactly this environment.
    for name, value in game_environment(overlay).items():
        monkeypatch.setenv(name, value)
    done = subprocess.run(
        [sys.executable, "-m", PACKAGE, "print-config", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["settings"]
    for name in game_environment(overlay):
        assert report[env_names[name]]["source"] == "env", name


def test_the_cluster_url_comes_from_a_secret_the_overlays_provide() -> None:
    for overlay in ("overlays/dev", "overlays/prod"):
        objects = rendered(overlay)
        container = game_container(one(objects, "Deployment")["spec"]["template"]["spec"])
        (ref,) = [e for e in container["env"] if e["name"] == f"{ENV_PREFIX}CLUSTER_URL"]
        secret = ref["valueFrom"]["secretKeyRef"]
        if overlay == "overlays/dev":  # generated beside the in-cluster Redis
            data = one(objects, "Secret", secret["name"])["data"]
            assert set(data) == {"url", "password"}
            redis = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in redis["env"]}
            assert refs == {secret["name"]}
            service = one(objects, "Service", f"{SLUG}-redis")
            url = base64.b64decode(data["url"]).decode()
            assert f"@{service['metadata']['name']}:6379/" in url
        else:  # created by the operator: named in the overlay's instructions
            assert secret["name"] == f"{SLUG}-redis"
            text = (DEPLOY / "overlays" / "prod" / "kustomization.yaml").read_text("utf-8")
            assert f"kubectl create secret generic {SLUG}-redis" in text


def test_the_image_is_what_the_dockerfile_builds() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text("utf-8")
    assert f"docker build -t {SLUG} ." in dockerfile
    version = _project_version()
    images = {
        overlay: {
            c["image"]
            for spec in pod_templates(overlay)
            for c in spec["containers"]
            if c["name"] == "game"
        }
        for overlay in OVERLAYS
    }
    assert images == {
        "overlays/dev": {f"{SLUG}:latest"},
        "overlays/prod": {f"registry.example.com/{SLUG}:{version}"},
        "agones": {f"{SLUG}:latest"},
    }


def _project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_locked_down_without_service_links(overlay: str) -> None:
    for pod in pod_templates(overlay):
        # A Service named like the project would inject <PREFIX>PORT=tcp://...
        assert pod["enableServiceLinks"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"] and container["resources"]["limits"]


def test_services_and_budgets_select_the_game_pods() -> None:
    objects = rendered("overlays/prod")
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    port_names = {
        p["name"] for p in game_container(deployment["spec"]["template"]["spec"])["ports"]
    }
    for obj in objects:
        selector = None
        if obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
            assert {p["targetPort"] for p in obj["spec"]["ports"]} <= port_names
        elif obj["kind"] == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"]
        if selector is not None:
            assert selector.items() <= pod_labels.items(), obj["metadata"]["name"]
    players = one(objects, "Service", SLUG)["spec"]
    assert players["type"] == "LoadBalancer" and players["externalTrafficPolicy"] == "Local"
    assert one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == SLUG
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(Settings.model_fields["metrics_port"].default)


def test_the_fleet_matches_the_servers_agones_settings(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of("agones", monkeypatch)
    fleet = one(rendered("agones"), "Fleet")["spec"]["template"]["spec"]
    assert settings.agones is True
    # Several pings per period, so one late ping never fails a health check.
    assert settings.agones_health_interval * 2 <= fleet["health"]["periodSeconds"]
    assert fleet["health"]["disabled"] is False
    assert fleet["counters"]["players"]["capacity"] == settings.max_connections
    autoscaler = one(rendered("agones"), "FleetAutoscaler")
    assert autoscaler["spec"]["fleetName"] == one(rendered("agones"), "Fleet")["metadata"]["name"]
    selectors = allocation_example()["spec"]["selectors"]
    assert {s["matchLabels"]["agones.dev/sdk-protocol"] for s in selectors} == {settings.protocol}


def test_the_autoscaler_owns_the_replica_count() -> None:
    """With an autoscaler the Deployment names no count (a re-apply would reset it)."""
    prod = rendered("overlays/prod")
    assert "replicas" not in one(prod, "Deployment")["spec"]
    hpa = one(prod, "HorizontalPodAutoscaler")["spec"]
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    dev = rendered("overlays/dev")
    assert one(dev, "Deployment")["spec"]["replicas"] == 1
    assert not [o for o in dev if o["kind"] == "HorizontalPodAutoscaler"]
