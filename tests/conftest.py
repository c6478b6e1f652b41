"""Bake helpers shared by the template's tests.

Every test bakes through cookiecutter's Python API, the way `cookiecutter
--no-input key=value` does, into its own temporary directory, with a private
cookiecutter config so parallel workers never share replay files or a
user's ~/.cookiecutterrc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
TEMPLATE_PROJECT_DIR = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
OPTIONS: dict[str, Any] = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text("utf-8"))
# Choice lists as declared, default first.
CHOICES: dict[str, list[str]] = {k: v for k, v in OPTIONS.items() if isinstance(v, list)}

TEXT_SUFFIXES = {
    ".py",
    ".toml",
    ".md",
    ".txt",
    ".yaml",
    ".yml",
    ".cfg",
    ".ini",
    ".json",
    ".proto",
    ".env",
}
TEXT_NAMES = {"Makefile", "Dockerfile", "LICENSE", ".gitignore", ".gitattributes", ".dockerignore"}
JINJA_MARKERS = ("{{", "{%", "{#")
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Baked:
    """A generated repo and the answers it recorded in .cookiecutter.json."""

    path: Path
    context: dict[str, Any]

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text(encoding="utf-8")

    def toml(self, rel: str) -> dict[str, Any]:
        return tomllib.loads(self.read(rel))

    def files(self) -> list[Path]:
        return sorted(p for p in self.path.rglob("*") if p.is_file())

    def text_files(self) -> list[Path]:
        return [p for p in self.files() if p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES]


def cookiecutter_config(directory: Path) -> Path:
    """A private cookiecutter config file (replay and clone dirs under ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "cookiecutterrc.yaml"
    if not config.exists():
        config.write_text(
            f"cookiecutters_dir: {json.dumps(str(directory / 'cookiecutters'))}\n"
            f"replay_dir: {json.dumps(str(directory / 'replay'))}\n",
            encoding="utf-8",
        )
    return config


def bake(output_dir: Path, **answers: Any) -> Baked:
    """Bake the template with ``answers`` (as extra_context) into ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    project = cookiecutter(
        str(TEMPLATE_DIR),
        no_input=True,
        extra_context=answers,
        output_dir=str(output_dir),
        config_file=str(cookiecutter_config(output_dir / ".cookiecutter-config")),
    )
    path = Path(project)
    context = json.loads((path / ".cookiecutter.json").read_text(encoding="utf-8"))
    return Baked(path=path, context=context)


@pytest.fixture
def baker(tmp_path: Path) -> Callable[..., Baked]:
    """``baker(**answers)`` bakes into a fresh directory under this test's tmp_path."""
    counter = iter(range(1_000_000))

    def _bake(**answers: Any) -> Baked:
        return bake(tmp_path / f"bake{next(counter)}", **answers)

    return _bake


@pytest.fixture
def default_bake(baker: Callable[..., Baked]) -> Baked:
    return baker()


def run(
    args: list[str], cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tool(name: str) -> str:
    """A console script installed beside this interpreter (the template's venv)."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else name


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would leak this venv into a baked repo."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MAKELEVEL"}
        and not k.startswith("PYTEST_")
    }
    env.update(extra)
    return env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the long tests (baked-repo installs, Docker engine) first.

    xdist hands out tests in collection order, so a long test collected last
    would run alone at the end while the other workers sit idle. The first
    chunk a worker gets holds every long test, so the Makefile runs xdist with
    ``--dist worksteal``: an idle worker takes half of a busy one's queue, and
    two baked repos' suites run at once.
    """
    items.sort(
        key=lambda item: (
            0 if item.get_closest_marker("slow") or item.get_closest_marker("docker") else 1
        )
    )
