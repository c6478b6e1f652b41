"""Every option combination that changes files bakes into a clean, lint-free repo.

The model is cookiecutter-django's generation test: one table of
combinations, one bake helper, and the same battery of checks on each result.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CHOICES, JINJA_MARKERS, TEMPLATE_PROJECT_DIR, Baked, bake, run, tool

DOCKER_FILES = ("Dockerfile", ".dockerignore", "compose.yaml")
# Shipped with the Dockerfile only: they run the image it builds.
DEPLOY_FILES = (
    "deploy/base/kustomization.yaml",
    "deploy/overlays/dev/kustomization.yaml",
    "deploy/overlays/prod/kustomization.yaml",
    "deploy/agones/fleet.yaml",
    ".yamllint.yaml",
    "tests/test_deploy.py",
    "tests/agones_schema.yaml",
)
# Files every repo must have, with a lower bound on their size (bytes), so an
# accidentally emptied or truncated render fails.
REQUIRED_FILES = {
    "pyproject.toml": 800,
    "README.md": 3000,
    "Makefile": 500,
    ".gitignore": 50,
    ".gitattributes": 20,
    "LICENSE": 200,
    ".cookiecutter.json": 200,
    "config/server.example.toml": 800,
    "src/{pkg}/__init__.py": 50,
    "src/{pkg}/__main__.py": 50,
    "src/{pkg}/settings.py": 1000,
    "src/{pkg}/app.py": 200,
    "src/{pkg}/cli.py": 2000,
    "src/{pkg}/messages.py": 500,
    "src/{pkg}/handlers/__init__.py": 100,
    "src/{pkg}/sgs/__init__.py": 100,
    "src/{pkg}/sgs/settings.py": 500,
    "tests/test_settings.py": 500,
    "tests/test_cli.py": 500,
}
# Files allowed to be empty: markers whose presence is their content.
EMPTY_OK = {"py.typed", ".gitkeep"}
LICENSE_MARKERS = {
    "MIT": "Permission is hereby granted, free of charge",
    "Apache-2.0": "Apache License\n                           Version 2.0, January 2004",
    "BSD-3-Clause": "Redistribution and use in source and binary forms",
    "Proprietary": "All rights reserved.",
}
PYPROJECT_LICENSE = {
    "MIT": "MIT",
    "Apache-2.0": "Apache-2.0",
    "BSD-3-Clause": "BSD-3-Clause",
    "Proprietary": "LicenseRef-Proprietary",
}

COMBINATIONS = [
    dict(zip(("protocol", "resource_model", "use_docker", "license"), combo, strict=True))
    for combo in itertools.product(
        CHOICES["protocol"], CHOICES["resource_model"], (True, False), CHOICES["license"]
    )
]


def combo_id(answers: dict[str, Any]) -> str:
    docker = "docker" if answers["use_docker"] else "nodocker"
    return f"{answers['protocol']}-{answers['resource_model']}-{docker}-{answers['license']}"


# --- checks applied to every bake -------------------------------------------


def check_no_jinja_left(repo: Baked) -> None:
    leftovers = [
        f"{path.relative_to(repo.path)}: {marker!r}"
        for path in repo.text_files()
        for marker in JINJA_MARKERS
        if marker in path.read_text(encoding="utf-8")
    ]
    assert not leftovers, f"unrendered Jinja in: {leftovers}"
    names = [str(p.relative_to(repo.path)) for p in repo.path.rglob("*")]
    assert not [n for n in names if "{{" in n or "}}" in n], "unrendered path names"


# This template's issue tracker means nothing to the owner of a baked repo.
ISSUE_REFERENCE = re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE)


def check_no_issue_references(repo: Baked) -> None:
    found = [
        f"{path.relative_to(repo.path)}:{number}: {line.strip()}"
        for path in repo.text_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if ISSUE_REFERENCE.search(line)
    ]
    assert not found, "a baked repo cites this template's issue tracker:\n" + "\n".join(found)


def test_issue_reference_check_catches_every_spelling(tmp_path: Path) -> None:
    for text in ("see issue 6", "Issue #14", "issues 9 and 10", "(ISSUE  4)"):
        assert ISSUE_REFERENCE.search(text), text
    for text in ("no issues here", "tissue 5", "issue-free"):
        assert not ISSUE_REFERENCE.search(text), text


def check_no_empty_files(repo: Baked) -> None:
    empty = [
        str(p.relative_to(repo.path))
        for p in repo.files()
        if p.stat().st_size == 0 and p.name not in EMPTY_OK
    ]
    assert not empty, f"empty files: {empty}"
    pkg = repo.context["package_name"]
    for rel, minimum in REQUIRED_FILES.items():
        path = repo.path / rel.format(pkg=pkg)
        assert path.is_file(), f"missing {rel}"
        assert path.stat().st_size >= minimum, f"{rel} is suspiciously small"


def check_parsers(repo: Baked) -> None:
    for path in repo.files():
        if path.suffix == ".toml":
            tomllib.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in {".yaml", ".yml"}:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".py":
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert not list(repo.path.rglob("__pycache__")), "bytecode caches were shipped"


def check_ruff(repo: Baked) -> None:
    lint = run([tool("ruff"), "check", "--no-cache", "."], cwd=repo.path)
    assert lint.returncode == 0, f"ruff check failed:\n{lint.stdout}{lint.stderr}"
    fmt = run([tool("ruff"), "format", "--check", "--no-cache", "."], cwd=repo.path)
    assert fmt.returncode == 0, f"ruff format --check failed:\n{fmt.stdout}{fmt.stderr}"


def check_framework_copied_verbatim(repo: Baked) -> None:
    """_copy_without_render: the vendored framework is byte-for-byte the template's."""
    source = TEMPLATE_PROJECT_DIR / "src" / "{{cookiecutter.package_name}}" / "sgs"
    target = repo.path / "src" / repo.context["package_name"] / "sgs"
    expected = {
        p.relative_to(source): p.read_bytes()
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    copied = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert copied == expected


def check_answers(repo: Baked, answers: dict[str, Any]) -> None:
    for key, value in answers.items():
        assert repo.context[key] == value, key
    assert not [
        k for k in repo.context if k.startswith("_") and k not in {"_template", "_checkout"}
    ]


def check_pyproject(repo: Baked) -> dict[str, Any]:
    data = repo.toml("pyproject.toml")
    project = data["project"]
    ctx = repo.context
    assert project["name"] == ctx["project_slug"]
    assert project["version"] == ctx["version"]
    assert project["description"] == ctx["description"]
    assert project["requires-python"] == ">=3.11"
    assert project["authors"] == [{"name": ctx["author_name"], "email": ctx["author_email"]}]
    assert project["license"] == PYPROJECT_LICENSE[ctx["license"]]
    assert project["scripts"] == {
        ctx["project_slug"]: f"{ctx['package_name']}.cli:main",
        f"{ctx['project_slug']}-client": f"{ctx['package_name']}.cli:client_main",
    }
    deps = " ".join(project["dependencies"])
    for dep in ("pydantic>=2.7", "pydantic-settings>=2.3", "uvloop", "protobuf>=5", "msgpack>=1"):
        assert dep in deps
    assert "pymongo>=4" in deps  # the real `bson` module comes with pymongo
    assert not [d for d in project["dependencies"] if d.lower().startswith("bson")]
    dev = " ".join(project["optional-dependencies"]["dev"])
    for tool_name in (
        "pytest",
        "pytest-xdist",
        "pytest-timeout",
        "hypothesis",
        "ruff",
        "grpcio-tools",
    ):
        assert tool_name in dev
    target = "py" + ctx["python_version"].replace(".", "")
    assert data["tool"]["ruff"]["target-version"] == target
    assert data["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    return data


def check_settings_defaults(repo: Baked) -> None:
    """The answers become the defaults of the settings model and the example file."""
    ctx = repo.context
    example = repo.toml("config/server.example.toml")
    assert example["port"] == int(ctx["server_port"])
    assert example["protocol"] == ctx["protocol"]
    assert example["resource_model"] == ctx["resource_model"]
    assert example["logic_workers"] == int(ctx["logic_workers"])
    assert example["send_workers"] == int(ctx["send_workers"])
    source = repo.read(f"src/{ctx['package_name']}/settings.py")
    assert f'ENV_PREFIX = "{ctx["package_name"].upper()}_"' in source
    assert f"Field({int(ctx['server_port'])}," in source
    assert f'Field("{ctx["protocol"]}",' in source
    assert f"ResourceModel.{ctx['resource_model']}," in source


def check_everything(repo: Baked, answers: dict[str, Any]) -> None:
    check_answers(repo, answers)
    check_no_jinja_left(repo)
    check_no_issue_references(repo)
    check_no_empty_files(repo)
    check_parsers(repo)
    check_pyproject(repo)
    check_settings_defaults(repo)
    check_framework_copied_verbatim(repo)
    check_ruff(repo)


# --- the tests ----------------------------------------------------------------


@pytest.mark.parametrize("answers", COMBINATIONS, ids=combo_id)
def test_combination_bakes_clean(tmp_path: Path, answers: dict[str, Any]) -> None:
    repo = bake(tmp_path, **answers)
    check_everything(repo, answers)

    for name in DOCKER_FILES + DEPLOY_FILES:
        assert (repo.path / name).exists() is answers["use_docker"], name
    readme = repo.read("README.md")
    assert ("docker compose up --build" in readme) is answers["use_docker"]
    assert ("kubectl apply -k deploy/overlays/dev" in readme) is answers["use_docker"]
    assert f"{repo.context['project_slug']}-client robots --host 127.0.0.1" in readme

    license_text = repo.read("LICENSE")
    assert LICENSE_MARKERS[answers["license"]] in license_text
    for other, marker in LICENSE_MARKERS.items():
        if other != answers["license"]:
            assert marker not in license_text, f"{other} text leaked into {answers['license']}"
    assert repo.context["author_name"] in license_text
    classifiers = repo.toml("pyproject.toml")["project"]["classifiers"]
    assert ("Private :: Do Not Upload" in classifiers) is (answers["license"] == "Proprietary")


def test_defaults_match_cookiecutter_json(tmp_path: Path) -> None:
    """--no-input gives the documented defaults (first choice of each list)."""
    repo = bake(tmp_path)
    expected = {
        "project_name": "My Game Server",
        "project_slug": "my-game-server",
        "package_name": "my_game_server",
        "python_version": "3.12",
        "server_port": "6666",
        "protocol": "json",
        "resource_model": "shared_all",
        "logic_workers": "4",
        "send_workers": "2",
        "use_docker": True,
        "license": "MIT",
    }
    check_everything(repo, expected)
    assert repo.context["_template"] == str(TEMPLATE_PROJECT_DIR.parent)


@pytest.mark.parametrize("python_version", CHOICES["python_version"])
def test_python_version_sets_ruff_target(tmp_path: Path, python_version: str) -> None:
    repo = bake(tmp_path, python_version=python_version)
    check_everything(repo, {"python_version": python_version})


@pytest.mark.parametrize(
    "answers",
    [
        {"server_port": "1", "logic_workers": "1", "send_workers": "1"},
        {"server_port": "65535", "logic_workers": "1024", "send_workers": "1024"},
        {"project_name": "X", "version": "2.0.0rc1"},
        {
            "project_name": "A" * 10 + " Very Long Game Server Name For Line Lengths" + " z" * 3,
            "python_version": "3.13",
        },
    ],
    ids=["small-numbers", "big-numbers", "short-name", "long-name"],
)
def test_extreme_answers_stay_clean(tmp_path: Path, answers: dict[str, Any]) -> None:
    repo = bake(tmp_path, **answers)
    check_everything(repo, answers)


def test_custom_names_flow_everywhere(tmp_path: Path) -> None:
    answers = {"project_slug": "arena", "package_name": "arena_core", "server_port": "7001"}
    repo = bake(tmp_path, **answers)
    check_everything(repo, answers)
    assert repo.path.name == "arena"
    assert (repo.path / "src" / "arena_core" / "cli.py").is_file()
    makefile = repo.read("Makefile")
    assert "$(BIN)/arena serve" in makefile
    assert "ARENA_CORE_PORT" in repo.read("README.md")


def _kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI"):
            pytest.fail("no kubectl on PATH; CI must install it (deploy/ is rendered with it)")
        pytest.skip("no kubectl on PATH (deploy/ is rendered with it)")
    done = run([kubectl, "kustomize", str(path)], cwd=path)
    assert done.returncode == 0, f"kubectl kustomize {path}:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.parametrize(
    ("answers", "ports"),
    [
        (
            {"project_slug": "arena", "package_name": "arena_core", "server_port": "7001"},
            (7001, 7002, 9100),
        ),
        ({"server_port": "9099", "protocol": "msgpack"}, (9099, 9100, 9103)),
        ({"server_port": "65535"}, (65535, 0, 9100)),
    ],
    ids=["custom-names", "metrics-port-moved", "no-websocket-port"],
)
def test_deploy_follows_the_answers(
    tmp_path: Path, answers: dict[str, Any], ports: tuple[int, int, int]
) -> None:
    """Names, ports, env prefix and image in every overlay come from the answers."""
    repo = bake(tmp_path, **answers)
    slug, prefix = repo.context["project_slug"], repo.context["package_name"].upper() + "_"
    game, ws, metrics = ports
    dev = _kustomize(repo.path / "deploy" / "overlays" / "dev")
    deployment = next(o for o in dev if o["kind"] == "Deployment")
    assert deployment["metadata"]["name"] == slug
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == f"{slug}:latest"
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert declared == {k: v for k, v in {"game": game, "ws": ws, "metrics": metrics}.items() if v}
    settings = next(o for o in dev if o["kind"] == "ConfigMap")["data"]
    assert settings[f"{prefix}PORT"] == str(game)
    assert settings[f"{prefix}WS_PORT"] == str(ws)
    assert settings[f"{prefix}METRICS_PORT"] == str(metrics)
    assert settings[f"{prefix}PROTOCOL"] == repo.context["protocol"]
    assert {e["name"] for e in container["env"]} == {f"{prefix}CLUSTER_URL"}
    agones = _kustomize(repo.path / "deploy" / "agones")
    fleet = next(o for o in agones if o["kind"] == "Fleet")["spec"]["template"]["spec"]
    assert {p["name"]: p["containerPort"] for p in fleet["ports"]} == {
        k: v for k, v in {"game": game, "ws": ws}.items() if v
    }
    env = {e["name"]: e["value"] for e in fleet["template"]["spec"]["containers"][0]["env"]}
    assert env[f"{prefix}AGONES"] == "true" and env[f"{prefix}PORT"] == str(game)
    prod = _kustomize(repo.path / "deploy" / "overlays" / "prod")
    image = next(o for o in prod if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert (
        image["containers"][0]["image"] == f"registry.example.com/{slug}:{repo.context['version']}"
    )
