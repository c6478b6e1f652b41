"""Find the generated application package, so the benchmark needs no template rendering.

The generated repo has exactly one package under ``src/`` that vendors the
framework (``src/<package>/sgs/``) and builds the server (``app.py``).
``BENCH_PACKAGE`` overrides the search (for a renamed or installed package).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SRC = REPO_ROOT / "src"


def find_package() -> str:
    """The application package's import name; raises LookupError when there is none."""
    override = os.environ.get("BENCH_PACKAGE")
    if override:
        return override
    if SRC.is_dir():
        found = sorted(
            p.name for p in SRC.iterdir() if (p / "sgs").is_dir() and (p / "app.py").is_file()
        )
        if len(found) == 1:
            return found[0]
        if found:
            raise LookupError(f"several app packages under {SRC}: {found}; set BENCH_PACKAGE")
    raise LookupError(f"no package with sgs/ and app.py under {SRC}; set BENCH_PACKAGE")


def import_path_env() -> dict[str, str]:
    """The environment for child processes: ``src/`` and the repo root importable."""
    env = dict(os.environ)
    parts = [str(SRC), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def ensure_importable() -> None:
    """Make ``src/`` importable in this process (a plain checkout, not installed)."""
    for path in (str(SRC), str(REPO_ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
