"""This server's settings: the framework's fields, this project's defaults and sources.

Values are read, highest priority first, from command-line flags, the
environment (variables named ENV_PREFIX + the field name in capitals, e.g.
``PORT``), a ``.env`` file, a TOML file and finally the defaults below
(chosen when the project was generated). Every
source is listed explicitly in ``settings_customise_sources`` so the order is
visible in one place, and :func:`load_with_origins` reports which source gave
each value (``print-config`` prints it).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt, ValidationError
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from .settings_errors import InvalidSettings, problems
from .sgs.settings import ProtocolName, ResourceModel, ServerSettings

ENV_PREFIX = "{{ cookiecutter.package_name | upper }}_"
CONFIG_ENV_VAR = f"{ENV_PREFIX}CONFIG"
DEFAULT_CONFIG_FILE = Path("config") / "server.toml"
# Names of the sources, highest priority first, as print-config shows them.
ORIGINS = ("cli", "env", "dotenv", "toml", "default")

# The TOML file chosen by Settings.load(); a context variable rather than a
# class attribute so concurrent loads (tests) never see each other's file.
_config_file: ContextVar[Path | None] = ContextVar("config_file", default=None)


class SettingsFileError(ValueError):
    """A settings file was asked for (flag or env var) but cannot be read."""


def resolve_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The TOML file to read: --config, else ${CONFIG_ENV_VAR}, else the default if present.

    A file that was asked for explicitly must exist; the default file is optional.
    """
    for origin, candidate in (
        ("--config", explicit),
        (CONFIG_ENV_VAR, os.environ.get(CONFIG_ENV_VAR)),
    ):
        if candidate:
            path = Path(candidate)
            if not path.is_file():
                raise SettingsFileError(f"{origin}: settings file {str(path)!r} does not exist")
            return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


@contextmanager
def _using_config_file(path: Path | None) -> Iterator[None]:
    token = _config_file.set(path)
    try:
        yield
    finally:
        _config_file.reset(token)


class Settings(ServerSettings):
    """Everything `serve` needs, validated before a port is bound."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # Defaults from the answers given when this project was generated.
    port: int = Field({{ cookiecutter.server_port | int }}, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    protocol: ProtocolName = Field("{{ cookiecutter.protocol }}", description="Codec for message values.")
    resource_model: ResourceModel = Field(
        ResourceModel.{{ cookiecutter.resource_model }}, description="go-sgs resource model (name or 1-4)."
    )
    logic_workers: PositiveInt = Field({{ cookiecutter.logic_workers | int }}, description="Logic workers in shared models.")
    send_workers: PositiveInt = Field(
        {{ cookiecutter.send_workers | int }}, description="Writers in model shared_logic_send/shared_all."
    )
    # Browser players: WebSocket on the TCP port + 1 unless ws_port is set (0 disables);
    # plain GETs on that port get the demo page and the JS client from web/.
    ws_port_follows_port = True
    ws_port: int = Field(
        {{ (cookiecutter.server_port | int) + 1 if (cookiecutter.server_port | int) < 65535 else 0 }},
        ge=0,
        le=65535,
        description="WebSocket port; 0 disables. Unset: the TCP port + 1.",
    )
    ws_static_dir: str = Field(
        "web", description="Files served to plain GETs on the WebSocket port; empty: none."
    )
    # Prometheus scrapes /metrics here; orchestrators probe /healthz and /readyz.
    metrics_port: int = Field(
        {{ cookiecutter.__metrics_port }},
        ge=0,
        le=65535,
        description="HTTP port of /metrics, /healthz and /readyz; 0 disables them.",
    )
    # Player state survives restarts in this SQLite file (relative to the working
    # directory; its folder is created). A cluster with no store_url uses its Redis.
    store_url: str = Field(
        "sqlite:///var/{{ cookiecutter.package_name }}.db",
        description="memory://, sqlite:///path/to/file.db, or redis://host:port/db.",
    )

    # The sample game's own limits (the framework's are in ServerSettings).
    chat_rate_limit: float = Field(
        5.0, ge=0, description="SayReq messages a second per link; 0 disables."
    )
    chat_rate_burst: PositiveInt = Field(10, description="SayReq messages a link may send at once.")
    arena_max_players: PositiveInt = Field(
        8, le=1000, description="Players in one arena match (the arena room's max_clients)."
    )
    arena_tick_rate: float = Field(
        20.0, gt=0, le=120.0, description="Arena ticks a second: inputs applied, state pushed."
    )
    auth_timeout: float = Field(
        15.0,
        ge=0,
        description="Seconds a link may stay without logging in before "
        "Error(login_timeout) and close; 0 disables.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """cli flags (init kwargs) > environment > .env > TOML file > defaults."""
        toml_file = _config_file.get() or resolve_config_file()
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    @classmethod
    def load(cls, config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
        """Build the settings; ``overrides`` (flags) set to None are treated as absent.

        A bad value raises :class:`InvalidSettings`: one line per problem, naming
        the setting, its value and where it came from, what is wrong and the fix.
        """
        flags = {name: value for name, value in overrides.items() if value is not None}
        toml_file = resolve_config_file(config)
        with _using_config_file(toml_file):
            try:
                return cls(**flags)
            except (ValidationError, SettingsError, tomllib.TOMLDecodeError) as exc:
                lines = problems(exc, cls, ENV_PREFIX, flags, toml_file)
                raise InvalidSettings(lines) from None

    def summary(self) -> str:
        """One log line with every effective value."""
        return " ".join(f"{name}={value}" for name, value in self.model_dump(mode="json").items())


def load_with_origins(
    config: str | os.PathLike[str] | None = None, **overrides: Any
) -> tuple[Settings, dict[str, str], Path | None]:
    """The settings, the origin of each field (one of ORIGINS) and the TOML file used.

    The origins come from asking each source for its raw data in the same
    priority order settings_customise_sources gives pydantic.
    """
    toml_file = resolve_config_file(config)
    settings = Settings.load(toml_file, **overrides)
    layers: list[tuple[str, dict[str, Any]]] = [
        ("cli", {k: v for k, v in overrides.items() if v is not None}),
        ("env", EnvSettingsSource(Settings)()),
        ("dotenv", DotEnvSettingsSource(Settings)()),
        ("toml", TomlConfigSettingsSource(Settings, toml_file=toml_file)() if toml_file else {}),
    ]
    origins = {
        name: next((label for label, data in layers if name in data), "default")
        for name in Settings.model_fields
    }
    return settings, origins, toml_file
