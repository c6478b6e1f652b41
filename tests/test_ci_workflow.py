"""The generated repo's CI workflow: valid, and installing only from the lock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from conftest import Baked, run, tool

WORKFLOW = ".github/workflows/ci.yml"


@pytest.mark.parametrize("use_docker", [True, False])
def test_workflow_validates_against_the_github_schema(
    baker: Callable[..., Baked], use_docker: bool
) -> None:
    repo = baker(use_docker=use_docker, python_version="3.13")
    result = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", WORKFLOW],
        repo.path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workflow = yaml.safe_load(repo.read(WORKFLOW))
    assert ("image" in workflow["jobs"]) is use_docker
    test_job = workflow["jobs"]["test"]
    setup = next(
        s for s in test_job["steps"] if s.get("uses", "").startswith("actions/setup-python")
    )
    assert setup["with"]["python-version"] == "3.13"


def test_workflow_runs_the_readme_test_command_from_the_lock(default_bake: Baked) -> None:
    workflow = yaml.safe_load(default_bake.read(WORKFLOW))
    commands = [s.get("run", "") for s in workflow["jobs"]["test"]["steps"]]
    assert any(c.startswith("make lock-check") for c in commands), commands
    assert any(c.startswith("make test") for c in commands), commands
    assert not any("pip install" in c for c in commands), "CI installs through make, from the lock"
    makefile = default_bake.read("Makefile")
    assert "pip install --require-hashes --no-deps -r $(LOCK)" in makefile
