"""Baked repos install the way their README says and pass their own test suite.

Four bakes cover every protocol and every resource model (not the cross
product: the generated suite itself runs every codec under every model).
Each one runs `make install` (a fresh .venv, `pip install -e '.[dev]'`) and
`make test` (ruff check, ruff format --check, pytest) in the baked repo. The
pip cache is shared, so only the first install downloads anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import CHOICES, bake, clean_env, run

INSTALL_TIMEOUT = 900
TEST_TIMEOUT = 900

E2E_BAKES: list[dict[str, Any]] = [
    {"protocol": "json", "resource_model": "shared_all"},
    {
        "protocol": "protobuf",
        "resource_model": "per_link",
        "use_docker": False,
        "license": "Apache-2.0",
        "python_version": "3.13",
    },
    {
        "protocol": "msgpack",
        "resource_model": "shared_logic",
        "license": "Proprietary",
        "python_version": "3.11",
        "logic_workers": "1",
    },
    {
        "protocol": "bson",
        "resource_model": "shared_logic_send",
        "license": "BSD-3-Clause",
        "project_name": "Élan Arena",
        "server_port": "7777",
        "send_workers": "3",
    },
]


def test_e2e_bakes_cover_every_protocol_and_resource_model() -> None:
    assert {b["protocol"] for b in E2E_BAKES} == set(CHOICES["protocol"])
    assert {b["resource_model"] for b in E2E_BAKES} == set(CHOICES["resource_model"])


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.mark.slow
@pytest.mark.parametrize(
    "answers", E2E_BAKES, ids=[f"{b['protocol']}-{b['resource_model']}" for b in E2E_BAKES]
)
def test_baked_repo_installs_and_passes_its_own_tests(
    tmp_path: Path, answers: dict[str, Any]
) -> None:
    repo = bake(tmp_path, **answers)
    # Two bakes run at once on a 2-core machine: one pytest worker each keeps
    # the generated suite's timing-sensitive tests (room ticks) honest.
    env = clean_env(PYTEST_XDIST_AUTO_NUM_WORKERS=os.environ.get("SGS_E2E_WORKERS", "1"))

    install = run(["make", "install"], cwd=repo.path, env=env, timeout=INSTALL_TIMEOUT)
    assert install.returncode == 0, f"make install failed:\n{tail(install.stdout + install.stderr)}"
    command = repo.path / ".venv" / "bin" / repo.context["project_slug"]
    assert command.is_file()

    # The answers are the installed server's defaults.
    shown = run([str(command), "print-config", "--json"], cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)["settings"]
    assert settings["protocol"] == {
        "value": answers["protocol"],
        "source": "default",
        "env": f"{repo.context['package_name'].upper()}_PROTOCOL",
    }
    assert settings["resource_model"]["value"] == answers["resource_model"]
    assert settings["port"]["value"] == int(repo.context["server_port"])
    assert settings["logic_workers"]["value"] == int(repo.context["logic_workers"])
    assert settings["send_workers"]["value"] == int(repo.context["send_workers"])

    result = run(["make", "test"], cwd=repo.path, env=env, timeout=TEST_TIMEOUT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"make test failed in the baked repo:\n{tail(output, 120)}"
    summary = [line for line in output.splitlines() if " passed" in line and "===" in line]
    assert summary and " failed" not in summary[-1], tail(output)
