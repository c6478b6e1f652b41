"""Check and re-resolve the dependency lock (requirements/*.txt).

Why requirement files with hashes rather than `uv.lock` or `poetry.lock`: the
Makefile, the Dockerfile and CI install with plain `pip` into a plain venv,
and `pip install --require-hashes` reads these files with no other tool on
the machine. Only re-resolving (`make lock`, `make upgrade`) needs `uv`,
which resolves one *universal* file for every Python version this project
supports (markers such as `python_full_version >= '3.12'` pick the lines).

Three files, one per consumer:

* ``main.txt``  -- the runtime dependencies (what the Docker image ships);
* ``build.txt`` -- the build backend (``[build-system] requires``);
* ``dev.txt``   -- runtime + build + the ``dev`` extra (``make install``).

Each file starts with the digest of the ``pyproject.toml`` fields it was
resolved from. ``check`` compares digests, so an edit to the dependencies in
``pyproject.toml`` without ``make lock`` stops every install with a message
saying what to run, instead of installing something nobody resolved.

This script uses the standard library only: it runs before anything is
installed (``make install`` and the Docker build call ``check`` first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYPROJECT = ROOT / "pyproject.toml"
DIGEST_PREFIX = "# inputs-sha256: "
#: The lowest Python this project supports; uv resolves for it and every newer one.
PYTHON_FLOOR = "3.11"


def inputs(pyproject: dict) -> dict[str, list[str]]:
    """The requirement lists of each lock file, read from pyproject.toml."""
    project = pyproject["project"]
    runtime = list(project.get("dependencies", []))
    build = list(pyproject.get("build-system", {}).get("requires", []))
    dev = list(project.get("optional-dependencies", {}).get("dev", []))
    return {"main.txt": runtime, "build.txt": build, "dev.txt": runtime + build + dev}


def digest(requirements: list[str], requires_python: str) -> str:
    """A digest of what a lock file was resolved from (order and spacing ignored)."""
    canonical = sorted("".join(r.split()) for r in requirements)
    payload = json.dumps({"requires": canonical, "python": requires_python})
    return hashlib.sha256(payload.encode()).hexdigest()


def load_pyproject(path: Path = PYPROJECT) -> dict:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def recorded_digest(lock: Path) -> str | None:
    """The digest written in a lock file's header, or None when there is none."""
    with lock.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(DIGEST_PREFIX):
                return line[len(DIGEST_PREFIX) :].strip()
            if not line.startswith("#"):
                break
    return None


def stale_locks(pyproject: dict, lock_dir: Path = HERE) -> list[str]:
    """Lock files that are missing or were resolved from other requirements."""
    requires_python = pyproject["project"].get("requires-python", "")
    stale = []
    for name, requirements in inputs(pyproject).items():
        lock = lock_dir / name
        if not lock.is_file() or recorded_digest(lock) != digest(requirements, requires_python):
            stale.append(name)
    return stale


def check(_: argparse.Namespace) -> int:
    stale = stale_locks(load_pyproject())
    if not stale:
        return 0
    names = ", ".join(f"requirements/{name}" for name in stale)
    print(
        f"error: {names} out of date with pyproject.toml: its dependencies changed "
        "since the lock was resolved.\n"
        "  Run `make lock` (keeps every pin that still fits) or `make upgrade` "
        "(newest allowed versions),\n"
        "  review the diff of requirements/, and commit it with pyproject.toml.",
        file=sys.stderr,
    )
    return 1


def find_uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        sys.exit("error: `uv` not found; `make lock` installs it into .venv-tools first")
    return str(Path(uv).absolute()) if os.sep in uv else uv  # uv runs from a temporary folder


def compile_locks(args: argparse.Namespace) -> int:
    """Re-resolve every lock file with `uv pip compile --universal --generate-hashes`."""
    pyproject = load_pyproject()
    requires_python = pyproject["project"].get("requires-python", "")
    uv = find_uv()
    for name, requirements in inputs(pyproject).items():
        lock = HERE / name
        with tempfile.TemporaryDirectory() as tmp:
            # Relative names, run from the temporary folder: the "# via -r main.in"
            # annotations stay the same from one run to the next.
            source = Path(tmp) / name.replace(".txt", ".in")
            source.write_text("\n".join(requirements) + "\n", encoding="utf-8")
            out = Path(tmp) / name
            if lock.is_file() and not args.upgrade:
                # uv keeps the pins of an existing output file where they still fit.
                out.write_bytes(lock.read_bytes())
            command = [
                uv, "pip", "compile", source.name, "--output-file", out.name,
                "--universal", "--generate-hashes", "--python-version", PYTHON_FLOOR,
                "--no-header", "--quiet",
            ]  # fmt: skip
            if args.upgrade:
                command.append("--upgrade")
            subprocess.run(command, check=True, cwd=tmp)
            body = out.read_text(encoding="utf-8")
        header = (
            f"# Locked by `make lock` (uv pip compile --universal --generate-hashes) from\n"
            f"# pyproject.toml for Python {requires_python}. Do not edit by hand.\n"
            f"{DIGEST_PREFIX}{digest(requirements, requires_python)}\n"
        )
        lock.write_text(header + body, encoding="utf-8")
        print(f"wrote requirements/{name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="requirements/lock.py", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="exit 1 when a lock file is out of date with pyproject.toml")
    compile_parser = sub.add_parser("compile", help="re-resolve the lock files with uv")
    compile_parser.add_argument("--upgrade", action="store_true", help="newest allowed versions")
    args = parser.parse_args(argv)
    handler = check if args.command == "check" else compile_locks
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
