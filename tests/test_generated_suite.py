"""Baked repos install the way their README says and pass their own test suite.

Four bakes cover every protocol and every resource model (not the cross
product: the generated suite itself runs every codec under every model).
Each one runs `make install` (a fresh .venv from the hashed lock, requirements/dev.txt) and
`make test` (ruff check, ruff format --check, pytest) in the baked repo. The
pip cache is shared, so only the first install downloads anything.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
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


def readme_robots_command(readme: str, slug: str, port: int) -> list[str]:
    """The README's first robots command line, pointed at ``port``."""
    line = next(ln for ln in readme.splitlines() if f"{slug}-client" in ln and "robots" in ln)
    args = shlex.split(line.strip().strip("`"))
    assert "--port" in args, line
    args[args.index("--port") + 1] = str(port)
    return [*args, "--robots", "3", "--requests", "5"]


LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def serve_and_run_readme_client(repo_path: Path, slug: str, env: dict[str, str]) -> str:
    """Start `<slug> serve`, run the README's client line against it, SIGTERM, exit 0.

    The server binds port 0 and the test reads the bound port from its log:
    picking a "free" port first races with the other bake's ephemeral ports.
    """
    bin_dir = repo_path / ".venv" / "bin"
    server = subprocess.Popen(
        [str(bin_dir / slug), "serve", "--host", "127.0.0.1", "--port", "0"],
        cwd=repo_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        port = 0
        deadline = time.monotonic() + 30
        while not port:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("server never listened:\n" + "".join(output)) from None
            assert line is not None, f"server exited {server.wait()}:\n" + "".join(output)
            output.append(line)
            if found := LISTENING.search(line):
                port = int(found.group(1))
        health = [str(bin_dir / slug), "healthcheck", "--port", str(port)]
        while run(health, cwd=repo_path, env=env).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, (
                "server never healthy:\n" + "".join(output)
            )
            time.sleep(0.3)
        readme = (repo_path / "README.md").read_text(encoding="utf-8")
        robots = run(readme_robots_command(readme, slug, port), cwd=repo_path, env=env)
        assert robots.returncode == 0, robots.stdout + robots.stderr
        assert "errors 0" in " ".join(robots.stdout.split()), robots.stdout
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        reader.join(timeout=10)
    while (line := lines.get_nowait() if not lines.empty() else None) is not None:
        output.append(line)
    log = "".join(output)
    assert server.returncode == 0, log
    return log


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
    # The Chromium test of the demo page runs in the default bake only (its JS
    # client tests run every codec in every bake); the others skip it on purpose.
    browser = answers == E2E_BAKES[0]
    if not browser:
        env["SGS_BROWSER_TESTS"] = "0"

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

    # The README's way to talk to it works against the installed server.
    log = serve_and_run_readme_client(repo.path, repo.context["project_slug"], env)
    assert f"protocol={answers['protocol']}" in log
    assert f"resource_model={answers['resource_model']}" in log

    result = run(
        ["make", "test", "PYTEST_ARGS=-n auto -rs"], cwd=repo.path, env=env, timeout=TEST_TIMEOUT
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"make test failed in the baked repo:\n{tail(output, 120)}"
    # Where node, npm and chromium exist (always under CI, which installs them),
    # the JS client and browser tests ran: none of them was skipped.
    if all(shutil.which(tool) for tool in ("node", "npm", "chromium")):
        skipped = [ln for ln in output.splitlines() if "SKIPPED" in ln and "test_web_client" in ln]
        expected = [] if browser else [ln for ln in skipped if "SGS_BROWSER_TESTS=0" in ln]
        assert skipped == expected, "\n".join(skipped)
    summary = [line for line in output.splitlines() if " passed" in line and "===" in line]
    assert summary and " failed" not in summary[-1], tail(output)

    if answers is E2E_BAKES[0]:
        # The 60-second soak: good, slow, hostile and churning clients at once.
        soak = run(["make", "soak", "SOAK_SECONDS=60"], cwd=repo.path, env=env, timeout=300)
        assert soak.returncode == 0, f"make soak failed:\n{tail(soak.stdout + soak.stderr, 80)}"
        assert "SOAK PASSED" in soak.stdout, tail(soak.stdout)
