"""Validate the answers before cookiecutter writes a single file.

Cookiecutter renders this file with Jinja, then runs it with its own Python
interpreter inside the (still empty) project directory; exit status 1 aborts
the bake and cookiecutter removes the directory. Every problem found is
printed, each naming the field and the value that was given, so a user fixes
all of them in one go. Standard library only: nothing else is guaranteed to be
importable in the interpreter that runs cookiecutter.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from importlib import metadata

# A raw string: jsonify escapes quotes and backslashes for JSON, and those
# escapes must reach json.loads untouched whatever the answers contain.
CONTEXT = json.loads(r"""{{ cookiecutter | jsonify }}""")

MIN_COOKIECUTTER = (2, 7)

# Top-level modules the generated server, its tests or its tools import. A
# package with one of these names would shadow it once installed.
SHADOWED_MODULES = frozenset(
    {
        "_pytest",
        "benchmarks",
        "bson",
        "cookiecutter",
        "google",
        "grpc",
        "grpc_tools",
        "gridfs",
        "hatchling",
        "hypothesis",
        "msgpack",
        "msgspec",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "pymongo",
        "pytest",
        "ruff",
        "sgs",
        "test",
        "tests",
        "typing_extensions",
        "uvloop",
        "xdist",
        "yaml",
    }
)

MAX_NAME_LENGTH = 60  # command and import names; longer ones break line lengths and shells
SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
# No leading zeros: the value is rendered into Python source as a literal.
INT_RE = re.compile(r"^[1-9][0-9]*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
# PEP 440, public versions (the shape pip and hatchling accept).
VERSION_RE = re.compile(
    r"^(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*"
    r"(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?$"
)
CHOICES = {
    "python_version": ("3.11", "3.12", "3.13"),
    "protocol": ("json", "protobuf", "msgpack", "bson"),
    "resource_model": ("per_link", "shared_logic", "shared_logic_send", "shared_all"),
    "license": ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary"),
}


def check_package_name(value: str) -> str | None:
    """The import name: an identifier, not a keyword, shadowing nothing."""
    if len(value) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    if not value.isidentifier() or not value.isascii():
        return "is not a valid Python identifier (use letters, digits and _)"
    if keyword.iskeyword(value):
        return "is a Python keyword"
    if value != value.lower():
        return "must be lowercase (PEP 8 package names)"
    if value in SHADOWED_MODULES or value in sys.stdlib_module_names:
        return "would shadow a module the server imports; pick another name"
    return None


def check_slug(value: str) -> str | None:
    """The distribution and command name: kebab-case ASCII, starting with a letter."""
    if len(value) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    if SLUG_RE.match(value):
        return None
    if any(ch.isspace() for ch in value):
        return "must not contain spaces (kebab-case, e.g. my-game-server)"
    if value != value.lower():
        return "must be lowercase (kebab-case, e.g. my-game-server)"
    if value[:1].isdigit():
        return "must start with a letter, not a digit"
    return "must be kebab-case: lowercase letters, digits and single dashes"


def check_int(value: object, low: int, high: int) -> str | None:
    """A whole number in [low, high]; answers arrive as strings or numbers."""
    text = str(value).strip()
    if isinstance(value, bool) or not INT_RE.match(text):
        return f"is not a whole number between {low} and {high} (no sign, no leading zeros)"
    if not low <= int(text) <= high:
        return f"is outside {low}-{high}"
    return None


def check_email(value: str) -> str | None:
    return None if EMAIL_RE.match(value) else "is not an email address (needs one @)"


def check_version(value: str) -> str | None:
    return None if VERSION_RE.match(value) else "is not a PEP 440 version (e.g. 0.1.0)"


def check_cookiecutter_version() -> str | None:
    """Return a message when the running cookiecutter is too old for this template."""
    try:
        installed = metadata.version("cookiecutter")
    except metadata.PackageNotFoundError:
        return None  # not installed as a distribution (vendored): nothing to compare
    parts = tuple(int(p) for p in re.findall(r"\d+", installed)[:2])
    if parts < MIN_COOKIECUTTER:
        wanted = ".".join(map(str, MIN_COOKIECUTTER))
        return (
            f"cookiecutter {installed!r} is too old: this template needs cookiecutter >= "
            f"{wanted} (pip install -U 'cookiecutter>={wanted}')"
        )
    return None


def find_problems(context: dict[str, object]) -> list[str]:
    """Every problem with the answers, as 'field 'value' reason' lines."""
    problems: list[str] = []

    def check(field: str, reason: str | None) -> None:
        if reason:
            problems.append(f"{field} {str(context.get(field))!r} {reason}")

    check("project_slug", check_slug(str(context["project_slug"])))
    check("package_name", check_package_name(str(context["package_name"])))
    check("server_port", check_int(context["server_port"], 1, 65535))
    check("logic_workers", check_int(context["logic_workers"], 1, 1024))
    check("send_workers", check_int(context["send_workers"], 1, 1024))
    check("author_email", check_email(str(context["author_email"])))
    check("version", check_version(str(context["version"])))
    if not str(context["project_name"]).strip():
        problems.append("project_name '' must not be empty")
    for field, allowed in CHOICES.items():
        if context[field] not in allowed:
            check(field, f"is not one of {', '.join(allowed)}")
    if not isinstance(context["use_docker"], bool):
        check("use_docker", "is not true or false")
    too_old = check_cookiecutter_version()
    if too_old:
        problems.append(too_old)
    return problems


def main() -> int:
    problems = find_problems(CONTEXT)
    if not problems:
        return 0
    print("ERROR: sgs-template cannot bake with these answers:", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
