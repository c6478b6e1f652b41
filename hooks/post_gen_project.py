"""Shape the freshly generated repo to the answers, then say what to do next.

Runs inside the generated project directory. Everything here is optional
polish on an already complete repo, so no step may fail the bake: a step
that raises is reported as a warning and the rest still run. Standard
library only.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# A raw string: see pre_gen_project.py.
CONTEXT = json.loads(r"""{{ cookiecutter | jsonify }}""")

Answers = dict[str, object]

# (why, when, paths relative to the project root): applied top to bottom.
REMOVALS: tuple[tuple[str, Callable[[Answers], bool], tuple[str, ...]], ...] = (
    (
        "use_docker is false",
        lambda a: not a["use_docker"],
        ("Dockerfile", ".dockerignore", "compose.yaml"),
    ),
    (
        # deploy/ runs the image the Dockerfile builds; without one it has nothing to run.
        "use_docker is false (deploy/ runs the Dockerfile's image)",
        lambda a: not a["use_docker"],
        ("deploy", ".yamllint.yaml", "tests/test_deploy.py", "tests/agones_schema.yaml"),
    ),
)

# Private keys worth keeping in the answers file (where the template came
# from); the rest (_output_dir, _repo_dir, __prompts__, ...) are machine paths
# or template internals.
KEPT_PRIVATE_KEYS = ("_template", "_checkout")


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def apply_removals(root: Path, answers: Answers) -> list[str]:
    """Delete what the answers did not ask for; return the removed paths."""
    removed = []
    for _why, applies, paths in REMOVALS:
        if not applies(answers):
            continue
        for rel in paths:
            target = root / rel
            if target.exists() or target.is_symlink():
                remove_path(target)
                removed.append(rel)
    return removed


def remove_bytecode(root: Path) -> None:
    """The vendored framework is copied verbatim; never ship caches from it."""
    for cache in sorted(root.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    for pyc in root.rglob("*.py[co]"):
        pyc.unlink(missing_ok=True)


def remove_empty_dirs(root: Path) -> list[Path]:
    """Remove folders left empty (deepest first), never the root itself."""
    removed = []
    dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))
    for folder in reversed(dirs):
        if folder.is_symlink() or any(folder.iterdir()):
            continue
        folder.rmdir()
        removed.append(folder)
    return removed


def public_answers(context: Answers) -> Answers:
    """The answers a later re-bake or update needs, without machine paths."""
    answers = {k: v for k, v in context.items() if not k.startswith("_")}
    for key in KEPT_PRIVATE_KEYS:
        if context.get(key) is not None:
            answers[key] = context[key]
    return answers


def write_answers(root: Path, context: Answers) -> None:
    text = json.dumps(public_answers(context), indent=2, sort_keys=True, ensure_ascii=False)
    (root / ".cookiecutter.json").write_text(text + "\n", encoding="utf-8")


def run_steps(steps: Iterable[tuple[str, Callable[[], object]]]) -> None:
    for name, step in steps:
        try:
            step()
        except Exception as exc:  # an optional step never fails the bake
            print(f"WARNING: post-generation step {name!r} failed: {exc}", file=sys.stderr)


def main() -> int:
    root = Path.cwd()
    run_steps(
        (
            ("removals", lambda: apply_removals(root, CONTEXT)),
            ("bytecode", lambda: remove_bytecode(root)),
            ("empty folders", lambda: remove_empty_dirs(root)),
            ("answers file", lambda: write_answers(root, CONTEXT)),
        )
    )
    slug = CONTEXT["project_slug"]
    print(f"\nCreated {slug}. Next, in a shell:\n")
    print(f"  cd {slug} && make run    # venv + install + serve on port {CONTEXT['server_port']}")
    print("  make test                # ruff + the test suite\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
