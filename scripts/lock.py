"""Re-resolve the dependency lock that every generated repo ships.

The lock lives in the template as plain files
(``{{cookiecutter.project_slug}}/requirements/*.txt``) and is identical for
every bake: the generated ``pyproject.toml`` lists the same dependencies
whatever the answers. Its ``pyproject.toml`` is Jinja until rendered, so this
script bakes the default project, lets the baked repo's own
``requirements/lock.py compile`` resolve it (with the current pins as
preferences, or ``--upgrade``), and copies the result back.

Run with the template venv's interpreter (``make lock`` / ``make upgrade``),
which has cookiecutter and uv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent
LOCK_DIR = TEMPLATE / "{{cookiecutter.project_slug}}" / "requirements"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upgrade", action="store_true", help="newest allowed versions")
    args = parser.parse_args()
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        sys.exit("error: uv not found (make venv installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=tmp))
        locks = sorted(LOCK_DIR.glob("*.txt"))
        for lock in locks:
            shutil.copy2(lock, repo / "requirements" / lock.name)
        command = [sys.executable, "requirements/lock.py", "compile"]
        if args.upgrade:
            command.append("--upgrade")
        subprocess.run(command, cwd=repo, check=True, env={**os.environ, "UV": uv})
        for lock in sorted((repo / "requirements").glob("*.txt")):
            shutil.copy2(lock, LOCK_DIR / lock.name)
            print(f"updated {LOCK_DIR.relative_to(TEMPLATE) / lock.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
