"""The dependency lock every generated repo ships (requirements/*.txt).

It must be current: every requirement of the generated pyproject.toml is
pinned, with hashes, at a version its specifier admits, on every Python the
template offers. When a dependency changes without `make lock`, installs stop
with a message that says what to run; `make lock` then resolves the change
and keeps every other pin.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CHOICES, Baked, clean_env, run
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCKS = ("main.txt", "build.txt", "dev.txt")
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$"
)


def pins(lock: Path) -> list[tuple[str, Version, Requirement, int]]:
    """(name, version, requirement with its marker, number of hashes) per pinned line."""
    lines = lock.read_text(encoding="utf-8").splitlines()
    found = []
    for n, line in enumerate(lines):
        match = PIN.match(line)
        if not match:
            continue
        hashes = 0
        for following in lines[n + 1 :]:
            if not following.startswith("    --hash=sha256:"):
                break
            hashes += 1
        text = f"{match['name']}=={match['version']}"
        if match["marker"]:
            text += f"; {match['marker']}"
        found.append(
            (canonicalize_name(match["name"]), Version(match["version"]), Requirement(text), hashes)
        )
    return found


def environment(python: str) -> dict[str, str]:
    env = default_environment()
    env.update(
        python_version=python,
        python_full_version=f"{python}.0",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    return env


def requirements_of(repo: Baked) -> dict[str, list[str]]:
    pyproject = repo.toml("pyproject.toml")
    runtime = pyproject["project"]["dependencies"]
    build = pyproject["build-system"]["requires"]
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    return {"main.txt": runtime, "build.txt": build, "dev.txt": runtime + build + dev}


def test_the_shipped_lock_is_current(default_bake: Baked) -> None:
    result = run([sys.executable, "requirements/lock.py", "check"], default_bake.path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("python", CHOICES["python_version"])
def test_the_lock_satisfies_pyproject_on_every_offered_python(
    default_bake: Baked, python: str
) -> None:
    env = environment(python)
    for name, requirements in requirements_of(default_bake).items():
        lock = default_bake.path / "requirements" / name
        pinned: dict[str, Version] = {}
        for package, version, requirement, hashes in pins(lock):
            assert hashes >= 1, f"{name}: {package}=={version} has no hash"
            if requirement.marker is None or requirement.marker.evaluate(env):
                assert package not in pinned, f"{name}: {package} pinned twice for {python}"
                pinned[package] = version
        assert pinned, f"{name} pins nothing"
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(env):
                continue
            package = canonicalize_name(requirement.name)
            assert package in pinned, f"{name} lacks {requirement.name} on Python {python}"
            assert requirement.specifier.contains(pinned[package], prereleases=True), (
                f"{name}: {package}=={pinned[package]} does not satisfy {text!r} (run `make lock`)"
            )


def test_every_line_of_the_lock_is_an_exact_pin(default_bake: Baked) -> None:
    for name in LOCKS:
        text = (default_bake.path / "requirements" / name).read_text(encoding="utf-8")
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith(("#", "--hash=")):
                continue
            assert PIN.match(line), f"{name}: not an exact pin: {line!r}"


def test_every_bake_locks_the_same_requirements(baker: Callable[..., Baked]) -> None:
    """The lock is one file for every answer, so no answer may change a dependency."""
    first = baker()
    other = baker(protocol="bson", python_version="3.13", use_docker=False, license="Proprietary")
    assert requirements_of(first) == requirements_of(other)
    result = run([sys.executable, "requirements/lock.py", "check"], other.path)
    assert result.returncode == 0, result.stderr


def add_dependency(repo: Baked, requirement: str) -> None:
    path = repo.path / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    marker = "dependencies = [\n"
    assert marker in text
    path.write_text(text.replace(marker, f'{marker}    "{requirement}",\n', 1), encoding="utf-8")


def test_an_unlocked_dependency_stops_make_install_with_what_to_run(default_bake: Baked) -> None:
    add_dependency(default_bake, "six>=1.16")
    result = run(["make", "install"], default_bake.path, env=clean_env())
    assert result.returncode != 0
    assert "requirements/main.txt" in result.stderr and "requirements/dev.txt" in result.stderr
    assert "make lock" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (default_bake.path / ".venv").exists(), "nothing may be installed from a stale lock"
    check = run(["make", "lock-check"], default_bake.path, env=clean_env())
    assert check.returncode != 0 and "make lock" in check.stderr


@pytest.mark.slow
def test_make_lock_resolves_a_new_dependency_and_keeps_the_other_pins(
    default_bake: Baked,
) -> None:
    """The README's way to add a dependency, against the real package index."""
    before = {
        name: {p: v for p, v, _, _ in pins(default_bake.path / "requirements" / name)}
        for name in LOCKS
    }
    add_dependency(default_bake, "six>=1.16")
    result = run(["make", "lock"], default_bake.path, env=clean_env(), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    check = run([sys.executable, "requirements/lock.py", "check"], default_bake.path)
    assert check.returncode == 0, check.stderr
    for name in ("main.txt", "dev.txt"):
        after = {p: v for p, v, _, _ in pins(default_bake.path / "requirements" / name)}
        assert after.pop("six") >= Version("1.16")
        assert after == before[name], f"make lock moved other pins in {name}"
    assert "six" not in {p for p, *_ in pins(default_bake.path / "requirements" / "build.txt")}


def test_pip_accepts_the_lock_for_every_offered_python(default_bake: Baked, tmp_path: Path) -> None:
    """pip itself reads the runtime lock, hashes and markers, for each offered Python.

    A dry run for another interpreter version resolves the pinned wheels the
    image would install (binary only, as a slim image has no compiler).
    """
    lock = default_bake.path / "requirements" / "main.txt"
    machine = platform.machine()
    tags = (f"manylinux_2_28_{machine}", f"manylinux_2_17_{machine}", f"manylinux2014_{machine}")
    platforms = [arg for tag in tags for arg in ("--platform", tag)]
    for python in CHOICES["python_version"]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--quiet",
                "--ignore-installed",
                "--target",
                str(tmp_path / python),
                "--python-version",
                python,
                "--only-binary=:all:",
                *platforms,
                "--require-hashes",
                "--no-deps",
                "-r",
                str(lock),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"Python {python}: {result.stderr[-3000:]}"
