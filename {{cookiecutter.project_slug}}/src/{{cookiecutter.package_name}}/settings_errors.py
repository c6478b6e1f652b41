"""Bad settings as one line per problem: the setting, its value, what is wrong, the fix.

pydantic's own message is written for developers: it ends each problem with
``[type=..., input_value=..., input_type=...]`` and a "For further
information visit" link. An operator who typed ``PORT=70000`` needs to read
which setting, which value, where it came from (flag, environment variable,
``.env``, config file), what is wrong with it and what to write instead.
:func:`problems` turns a :class:`~pydantic.ValidationError` (or the
settings source's parse error) into exactly that.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic_settings import DotEnvSettingsSource, SettingsError

from .sgs.settings import mask_url


class InvalidSettings(ValueError):
    """Settings that cannot be used; ``lines`` holds one readable line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def problems(
    exc: Exception,
    model: type[BaseModel],
    env_prefix: str,
    flags: Mapping[str, Any] | None = None,
    toml_file: Path | None = None,
) -> list[str]:
    """One line per problem in ``exc`` (a ValidationError, SettingsError or TOML error)."""
    where = _Origins(model, env_prefix, flags or {}, toml_file)
    if isinstance(exc, ValidationError):
        return [_line(err, model, where) for err in exc.errors(include_url=False)]
    if isinstance(exc, tomllib.TOMLDecodeError):
        return [f"config file {toml_file}: not valid TOML ({exc}); fix the line it names"]
    if isinstance(exc, SettingsError):
        return [_source_line(exc, model, where)]
    return [str(exc)]


def _line(err: Any, model: type[BaseModel], where: _Origins) -> str:
    what = _what(err)
    loc = err.get("loc") or ()
    if not loc:  # a check across settings: its message names them and the fix
        return f"settings: {what}"
    name = str(loc[0])
    field = model.model_fields.get(name)
    origin = where.of(name)
    value = _shown(name, err.get("input"))
    text = f"{name} = {value} ({origin}): {what}"
    fix = _expected(field) if err.get("type") != "value_error" else ""
    return f"{text}; {fix}" if fix else text


def _what(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    msg = re.sub(r"^(Value|Assertion) error, ", "", msg)
    return msg[:1].lower() + msg[1:]


def _shown(name: str, value: Any) -> str:
    if isinstance(value, str) and name.endswith("_url"):
        value = mask_url(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _expected(field: Any) -> str:
    """What the field takes, from its type and bounds: the fix to write."""
    if field is None:
        return ""
    annotation = field.annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "use one of " + ", ".join(str(v) for v in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, bool):
        return "use true or false"
    if origin is list:
        example = field.examples[0] if field.examples else "..."
        return f'use a JSON list, e.g. ["{example}"]'
    if isinstance(annotation, type) and hasattr(annotation, "__members__"):
        return "use one of " + ", ".join(m.value for m in annotation)  # type: ignore[attr-defined]
    kind = {int: "a whole number", float: "a number"}.get(annotation)  # type: ignore[call-overload]
    if kind is None:
        return ""
    low, high = _bounds(field.metadata)
    if low is not None and high is not None:
        return f"use {kind} from {low} to {high}"
    if low is not None:
        return f"use {kind} of at least {low}"
    if high is not None:
        return f"use {kind} of at most {high}"
    return f"use {kind}"


def _bounds(metadata: list[Any]) -> tuple[str | None, str | None]:
    low = high = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"{item.ge:g}"
        elif isinstance(item, annotated_types.Gt):
            low = f"more than {item.gt:g}"
        elif isinstance(item, annotated_types.Le):
            high = f"{item.le:g}"
        elif isinstance(item, annotated_types.Lt):
            high = f"less than {item.lt:g}"
    if low is not None and low.startswith("more than") and high is not None:
        return f"above {low.removeprefix('more than ')}", high
    return low, high


def _source_line(exc: SettingsError, model: type[BaseModel], where: _Origins) -> str:
    """A value the source could not even parse (a list setting that is not JSON)."""
    found = re.search(r'field "([^"]+)"', str(exc))
    if found is None:
        return str(exc)
    name = found.group(1)
    field = model.model_fields.get(name)
    raw = os.environ.get(where.env_name(name))
    value = f" = {_shown(name, raw)}" if raw is not None else ""
    fix = _expected(field) or "see the setting's description in config/server.example.toml"
    return f"{name}{value} ({where.of(name)}): not valid JSON; {fix}"


class _Origins:
    """Where a setting's value came from, highest priority first, as a user would look."""

    def __init__(
        self,
        model: type[BaseModel],
        env_prefix: str,
        flags: Mapping[str, Any],
        toml_file: Path | None,
    ) -> None:
        self.model = model
        self.prefix = env_prefix
        self.flags = flags
        self.toml_file = toml_file

    def env_name(self, name: str) -> str:
        return f"{self.prefix}{name.upper()}"

    def of(self, name: str) -> str:
        if self.flags.get(name) is not None:
            return "flag --" + name.replace("_", "-")
        env = self.env_name(name)
        if env in os.environ:
            return f"environment {env}"
        try:
            dotenv = DotEnvSettingsSource(self.model)()  # type: ignore[arg-type]
        except Exception:  # an unreadable .env is reported by its own error
            dotenv = {}
        if name in dotenv:
            return f".env {env}"
        if self.toml_file is not None:
            try:
                data = tomllib.loads(self.toml_file.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError):
                data = {}
            if name in data:
                return f"config file {self.toml_file}"
        return "default"
