"""Runs ``async def`` tests on uvloop, each in a fresh loop, with a time bound.

A dozen lines instead of a pytest plugin: the framework is what is under test,
so the loop it runs on is the real one (uvloop) and nothing else is in between.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from pathlib import Path
from typing import Any

import pytest
import uvloop

from redis_server import redis_server  # noqa: F401  (a fixture, shared by every test module)

from {{ cookiecutter.package_name }}.settings import ENV_PREFIX

ASYNC_TEST_TIMEOUT = 60.0

# Servers started by tests (in-process or `serve` subprocesses) serve no
# metrics unless a test asks for a port: the generated default, a fixed
# port, would collide between parallel tests.
os.environ.setdefault(f"{ENV_PREFIX}METRICS_PORT", "0")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(func(**kwargs), ASYNC_TEST_TIMEOUT))
    return True


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty working directory and none of this server's settings in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    return tmp_path
