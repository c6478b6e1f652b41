"""Settings: the generated defaults, every source, their priority and their errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.settings import (
    CONFIG_ENV_VAR,
    ENV_PREFIX,
    Settings,
    SettingsFileError,
    load_with_origins,
    resolve_config_file,
)
from {{ cookiecutter.package_name }}.sgs import (
    ResourceModel,
)

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "config" / "server.example.toml"


# Every test runs in an empty directory with no settings in the environment.
pytestmark = pytest.mark.usefixtures("isolated")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_generated_answers() -> None:
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == {{ cookiecutter.server_port | int }}
    assert settings.protocol == "{{ cookiecutter.protocol }}"
    assert settings.resource_model is ResourceModel.{{ cookiecutter.resource_model }}
    assert settings.logic_workers == {{ cookiecutter.logic_workers | int }}
    assert settings.send_workers == {{ cookiecutter.send_workers | int }}
    assert ENV_PREFIX == "{{ cookiecutter.package_name | upper }}_"
    _, origins, toml_file = load_with_origins()
    assert toml_file is None
    assert set(origins.values()) == {"default"}


def test_environment_uses_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}PORT", "7001")
    monkeypatch.setenv(f"{ENV_PREFIX}LOG_LEVEL", "debug")
    monkeypatch.setenv("PORT", "9")  # unprefixed: not ours
    settings, origins, _ = load_with_origins()
    assert settings.port == 7001
    assert settings.log_level == "DEBUG"
    assert origins["port"] == origins["log_level"] == "env"
    assert origins["host"] == "default"


def test_dotenv_file_in_working_directory(isolated: Path) -> None:
    write(isolated / ".env", f"{ENV_PREFIX}PROTOCOL=msgpack\n{ENV_PREFIX}IDLE_TIMEOUT=2.5\n")
    settings, origins, _ = load_with_origins()
    assert settings.protocol == "msgpack"
    assert settings.idle_timeout == 2.5
    assert origins["protocol"] == origins["idle_timeout"] == "dotenv"


def test_default_toml_file_is_read_when_present(isolated: Path) -> None:
    write(isolated / "config" / "server.toml", "logic_workers = 7\nresource_model = 2\n")
    settings, origins, toml_file = load_with_origins()
    assert toml_file == Path("config") / "server.toml"
    assert settings.logic_workers == 7
    assert settings.resource_model is ResourceModel.shared_logic
    assert origins["logic_workers"] == origins["resource_model"] == "toml"


def test_config_flag_beats_config_env_var(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_env = write(isolated / "a.toml", "port = 7100\n")
    from_flag = write(isolated / "b.toml", "port = 7200\n")
    write(isolated / "config" / "server.toml", "port = 7300\n")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(from_env))
    assert resolve_config_file() == from_env
    assert Settings.load().port == 7100
    assert Settings.load(from_flag).port == 7200
    assert Settings().port == 7100  # a plain Settings() honours the env var too


@pytest.mark.parametrize("via", ["flag", "env"])
def test_missing_config_file_is_an_error(via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if via == "env":
        monkeypatch.setenv(CONFIG_ENV_VAR, "missing.toml")
    with pytest.raises(SettingsFileError, match="missing.toml"):
        Settings.load("missing.toml" if via == "flag" else None)


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_priority_cli_env_dotenv_toml_default(
    layers: int, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the top ``layers`` sources absent, the next one down wins."""
    write(isolated / "config" / "server.toml", "max_connections = 40\n")
    if layers < 4:
        write(isolated / ".env", f"{ENV_PREFIX}MAX_CONNECTIONS=30\n")
    if layers < 3:
        monkeypatch.setenv(f"{ENV_PREFIX}MAX_CONNECTIONS", "20")
    flags = {"max_connections": 10} if layers < 2 else {}
    settings, origins, _ = load_with_origins(**flags)
    expected = {1: (10, "cli"), 2: (20, "env"), 3: (30, "dotenv"), 4: (40, "toml")}[layers]
    assert (settings.max_connections, origins["max_connections"]) == expected


def test_flags_set_to_none_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}HOST", "127.0.0.1")
    settings, origins, _ = load_with_origins(host=None, port="0")
    assert settings.host == "127.0.0.1" and origins["host"] == "env"
    assert settings.port == 0 and origins["port"] == "cli"


@pytest.mark.parametrize(
    ("value", "model"),
    [("1", "per_link"), ("2", "shared_logic"), ("3", "shared_logic_send"), ("4", "shared_all")]
    + [(m.value, m.value) for m in ResourceModel],
)
def test_resource_model_by_number_or_name(value: str, model: str) -> None:
    assert Settings.load(resource_model=value).resource_model is ResourceModel(model)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", "70000"),
        ("port", "not-a-port"),
        ("protocol", "xml"),
        ("resource_model", "5"),
        ("resource_model", "threads"),
        ("logic_workers", "0"),
        ("send_workers", "-1"),
        ("max_frame_size", str(32 * 1024 * 1024)),
        ("idle_timeout", "-1"),
        ("log_level", "LOUD"),
        ("loop", "trio"),
        ("send_overflow", "explode"),
    ],
)
def test_invalid_values_name_the_field(
    field: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}{field.upper()}", value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert [err["loc"][0] for err in caught.value.errors()] == [field]
    assert field in str(caught.value)


def test_example_config_documents_every_field_with_its_default() -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    example = tomllib.loads(text)
    # node_id's default is made per process, store_url's depends on cluster_url
    # and ws_port's on port, so the file shows those commented out.
    derived = ("node_id", "store_url", "ws_port")
    assert set(example) == set(Settings.model_fields) - set(derived)
    assert all(f"# {name} = " in text for name in derived)
    from_file, origins, _ = load_with_origins(EXAMPLE_CONFIG)
    from_toml = {k: v for k, v in origins.items() if k not in derived}
    assert from_toml == dict.fromkeys(example, "toml")
    assert from_file.model_dump(exclude={"node_id"}) == Settings().model_dump(exclude={"node_id"})
    assert {k: v for k, v in origins.items() if k in derived} == dict.fromkeys(derived, "default")


def test_summary_names_every_value() -> None:
    summary = Settings.load(port="7005", resource_model="1").summary()
    assert "port=7005" in summary and "resource_model=per_link" in summary
    for name in Settings.model_fields:
        assert f"{name}=" in summary
