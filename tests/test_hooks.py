"""The hooks: every invalid answer is refused with its field and value; post-gen prunes."""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TEMPLATE_DIR, bake, cookiecutter_config, run
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

# (answers, field, bad value shown in the message)
INVALID = [
    ({"package_name": "my-game"}, "package_name", "my-game"),
    ({"package_name": "9lives"}, "package_name", "9lives"),
    ({"package_name": "jeu_é"}, "package_name", "jeu_é"),
    ({"package_name": "class"}, "package_name", "class"),
    ({"package_name": "MyGame"}, "package_name", "MyGame"),
    ({"package_name": "x" * 61}, "package_name", "x" * 61),
    *[
        ({"package_name": name}, "package_name", name)
        for name in ("asyncio", "uvloop", "pydantic", "msgspec", "google", "msgpack", "bson", "sgs")
    ],
    *[
        ({"package_name": name}, "package_name", name)
        for name in ("test", "tests", "json", "logging", "benchmarks", "pymongo")
    ],
    ({"project_slug": "my game"}, "project_slug", "my game"),
    ({"project_slug": "MyGame"}, "project_slug", "MyGame"),
    ({"project_slug": "1game", "package_name": "game"}, "project_slug", "1game"),
    ({"project_slug": "my_game"}, "project_slug", "my_game"),
    ({"project_slug": "game-"}, "project_slug", "game-"),
    ({"project_name": "3D Arena"}, "project_slug", "3d-arena"),
    ({"server_port": "0"}, "server_port", "0"),
    ({"server_port": "65536"}, "server_port", "65536"),
    ({"server_port": "http"}, "server_port", "http"),
    ({"server_port": "-1"}, "server_port", "-1"),
    ({"server_port": "06666"}, "server_port", "06666"),
    ({"logic_workers": "0"}, "logic_workers", "0"),
    ({"logic_workers": "-2"}, "logic_workers", "-2"),
    ({"logic_workers": "four"}, "logic_workers", "four"),
    ({"send_workers": "0"}, "send_workers", "0"),
    ({"send_workers": "1.5"}, "send_workers", "1.5"),
    ({"author_email": "nobody"}, "author_email", "nobody"),
    ({"author_email": "a b@c"}, "author_email", "a b@c"),
    ({"version": "one"}, "version", "one"),
    ({"project_name": "   ", "project_slug": "game", "package_name": "game"}, "project_name", ""),
]


def ids(case: tuple[dict[str, Any], str, str]) -> str:
    answers, field, value = case
    return f"{field}={value[:20]}"


@pytest.mark.parametrize("case", INVALID, ids=[ids(c) for c in INVALID])
def test_invalid_answer_fails_the_hook_with_its_message(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], case: tuple[dict[str, Any], str, str]
) -> None:
    answers, field, value = case
    with pytest.raises(FailedHookException):
        bake(tmp_path, **answers)
    err = capfd.readouterr().err
    assert f"{field} {value!r}" in err, err
    # cookiecutter removes the half-made project: nothing but its own config remains
    assert [p.name for p in tmp_path.iterdir()] == [".cookiecutter-config"]


def test_all_problems_are_reported_at_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FailedHookException):
        bake(tmp_path, server_port="0", logic_workers="x", author_email="nope")
    err = capfd.readouterr().err
    for text in ("server_port '0'", "logic_workers 'x'", "author_email 'nope'"):
        assert text in err


def test_old_cookiecutter_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The hook reads cookiecutter's installed version; a 2.6 distribution is refused."""
    fake = tmp_path / "fake-site"
    dist = fake / "cookiecutter-2.6.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cookiecutter\nVersion: 2.6.0\n", encoding="utf-8"
    )
    # The hook runs in a child interpreter, which sees this distribution first.
    monkeypatch.setenv("PYTHONPATH", str(fake))
    with pytest.raises(FailedHookException):
        bake(tmp_path / "out")
    err = capfd.readouterr().err
    assert "cookiecutter '2.6.0' is too old" in err and ">= 2.7" in err


@pytest.mark.parametrize(
    "answers",
    [
        {"project_slug": "arena", "package_name": "arena"},
        {"project_slug": "a1-b2", "package_name": "a1_b2"},
        {"package_name": "match"},  # a soft keyword is a fine module name
        {"server_port": "65535", "logic_workers": "1", "send_workers": "1024"},
        {"author_email": "ops+game@example.co.uk", "version": "1.0.0.post1"},
    ],
)
def test_valid_edge_answers_pass(tmp_path: Path, answers: dict[str, Any]) -> None:
    repo = bake(tmp_path, **answers)
    for key, value in answers.items():
        assert repo.context[key] == value


def test_post_gen_prunes_and_records_answers(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    repo = bake(tmp_path, use_docker=False, license="Proprietary")
    out = capfd.readouterr().out
    assert f"cd {repo.context['project_slug']} && make run" in out
    assert "make test" in out
    assert not (repo.path / "Dockerfile").exists()
    assert not (repo.path / "compose.yaml").exists()
    assert not (repo.path / ".dockerignore").exists()
    assert "All rights reserved" in repo.read("LICENSE")
    empty_dirs = [p for p in repo.path.rglob("*") if p.is_dir() and not any(p.iterdir())]
    assert not empty_dirs
    assert not list(repo.path.rglob("__pycache__"))
    assert repo.context["_template"] == str(TEMPLATE_DIR)
    assert "_output_dir" not in repo.context and "__prompts__" not in repo.context
    assert repo.context["use_docker"] is False


def test_post_gen_removes_bytecode_copied_with_the_framework(tmp_path: Path) -> None:
    """The framework dir is copied raw; caches a developer left there must not ship."""
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE_DIR,
        template,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "tests", "__pycache__"),
    )
    sgs = (
        template / "{{cookiecutter.project_slug}}" / "src" / "{{cookiecutter.package_name}}" / "sgs"
    )
    (sgs / "__pycache__").mkdir()
    (sgs / "__pycache__" / "framework.cpython-311.pyc").write_bytes(b"stale bytecode")
    (sgs / "stray.pyc").write_bytes(b"stale bytecode")
    project = cookiecutter(
        str(template),
        no_input=True,
        output_dir=str(tmp_path / "out"),
        config_file=str(cookiecutter_config(tmp_path / "config")),
    )
    assert (Path(project) / "src" / "my_game_server" / "sgs" / "framework.py").is_file()
    assert not list(Path(project).rglob("__pycache__"))
    assert not list(Path(project).rglob("*.pyc"))


def test_a_failing_optional_step_only_warns(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """post_gen never fails the bake: a broken step warns and the others still run."""
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE_DIR,
        template,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "tests", "__pycache__"),
    )
    # A folder where the answers file should go makes that step raise.
    blocker = template / "{{cookiecutter.project_slug}}" / ".cookiecutter.json"
    blocker.mkdir()
    (blocker / "keep.txt").write_text("in the way\n", encoding="utf-8")
    project = Path(
        cookiecutter(
            str(template),
            no_input=True,
            extra_context={"use_docker": False},
            output_dir=str(tmp_path / "out"),
            config_file=str(cookiecutter_config(tmp_path / "config")),
        )
    )
    captured = capfd.readouterr()
    assert "WARNING: post-generation step 'answers file' failed" in captured.err
    assert "make test" in captured.out  # the steps after it still ran
    assert not (project / "Dockerfile").exists()  # and so did the ones before


def test_hooks_use_only_the_standard_library() -> None:
    for hook in sorted((TEMPLATE_DIR / "hooks").glob("*.py")):
        tree = ast.parse(hook.read_text(encoding="utf-8"))
        modules = {
            (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert modules, hook
        assert modules <= set(sys.stdlib_module_names) | {"__future__"}, (hook.name, modules)


def test_command_line_key_value_answers(tmp_path: Path) -> None:
    """The README's `cookiecutter --no-input key=value` form, through the real CLI."""
    result = run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "--output-dir",
            str(tmp_path),
            "--config-file",
            str(cookiecutter_config(tmp_path / "config")),
            str(TEMPLATE_DIR),
            "project_name=Space Arena",
            "protocol=protobuf",
            "resource_model=per_link",
            "use_docker=false",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    repo = tmp_path / "space-arena"
    answers = json.loads((repo / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert answers["use_docker"] is False
    assert (answers["protocol"], answers["resource_model"]) == ("protobuf", "per_link")
    assert not (repo / "Dockerfile").exists()
    assert "cd space-arena && make run" in result.stdout

    refused = run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "--output-dir", str(tmp_path)]
        + ["--config-file", str(cookiecutter_config(tmp_path / "config")), str(TEMPLATE_DIR)]
        + ["project_slug=bad slug"],
        cwd=tmp_path,
    )
    assert refused.returncode != 0
    assert "project_slug 'bad slug' must not contain spaces" in refused.stderr
