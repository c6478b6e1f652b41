"""The server command: serve, healthcheck, print-config and proto, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from testkit import ServeProcess, free_port

from {{ cookiecutter.package_name }} import (
    cli,
    client_cli,
)
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.messages import (
    catalog,
)
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    Settings,
)
from {{ cookiecutter.package_name }}.sgs.protocol import (
    PROTOCOLS,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)

PACKAGE = "{{ cookiecutter.package_name }}"
SLUG = "{{ cookiecutter.project_slug }}"
STARTUP_TIMEOUT = 20.0


# Every test runs in an empty directory with no settings in the environment.
pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(autouse=True)
def _no_fixed_metrics_port(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` here would bind the generated metrics_port, the same in parallel tests."""
    monkeypatch.setenv(f"{ENV_PREFIX}METRICS_PORT", "0")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", PACKAGE, *args]


def run_command(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout)


# --- print-config ---------------------------------------------------------------


def test_print_config_table_shows_values_and_sources(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / ".env").write_text(f"{ENV_PREFIX}LOGIC_WORKERS=9\n", encoding="utf-8")
    monkeypatch.setenv(f"{ENV_PREFIX}PORT", "7444")
    assert cli.main(["print-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == set(Settings.model_fields)
    assert rows["port"][1:] == ["7444", "env", f"{ENV_PREFIX}PORT"]
    assert rows["logic_workers"][1:3] == ["9", "dotenv"]
    assert rows["host"][1:3] == ['"0.0.0.0"', "default"]
    assert lines[0].startswith("config file: none")


def test_broker_password_never_shows(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}CLUSTER_URL", "redis://:s3cret-pw@127.0.0.1:6390/2")
    for argv in (["print-config"], ["print-config", "--json"]):
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert "s3cret-pw" not in out and "redis://:***@127.0.0.1:6390/2" in out
    settings = Settings()
    assert settings.cluster_url.endswith("s3cret-pw@127.0.0.1:6390/2"), "the real value is kept"
    assert settings.store_url == settings.cluster_url, "a cluster's store defaults to its Redis"
    assert "s3cret-pw" not in settings.summary()


def test_print_config_json_with_a_config_file(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = isolated / "custom.toml"
    config.write_text('protocol = "bson"\nresource_model = 3\n', encoding="utf-8")
    assert cli.main(["print-config", "--json", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config_file"] == str(config)
    assert report["env_prefix"] == ENV_PREFIX
    assert report["settings"]["protocol"] == {
        "value": "bson",
        "source": "toml",
        "env": f"{ENV_PREFIX}PROTOCOL",
    }
    assert report["settings"]["resource_model"]["value"] == "shared_logic_send"
    assert report["settings"]["port"] == {
        "value": {{ cookiecutter.server_port | int }},
        "source": "default",
        "env": f"{ENV_PREFIX}PORT",
    }


PROG = cli.PROG


# --- settings errors: one line per problem, exit 2, no traceback -----------------


def assert_clear(err: str, expected: list[tuple[str, str, str, str]]) -> None:
    """Exactly one line per problem, each naming (setting, value, origin, fix)."""
    lines = err.strip().splitlines()
    assert len(lines) == len(expected), err
    for line, (field, value, origin, fix) in zip(lines, expected, strict=True):
        assert line.startswith(f"{PROG}: {field} = "), line
        for part in (value, origin, fix):
            assert part in line, (part, line)
    for noise in ("[type=", "input_value", "For further information", "errors.pydantic.dev"):
        assert noise not in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["serve", "--port", "70000"],
            [("port", "'70000'", "flag --port", "use a whole number from 0 to 65535")],
        ),
        (
            ["serve", "--protocol", "xml"],
            [("protocol", "'xml'", "flag --protocol", "use one of json, protobuf, msgpack, bson")],
        ),
        (
            ["serve", "--resource-model", "9"],
            [("resource_model", "'9'", "flag --resource-model", "use one of per_link")],
        ),
        (
            ["healthcheck", "--port", "-5"],
            [("port", "'-5'", "flag --port", "from 0 to 65535")],
        ),
        (
            ["serve", "--port", "x", "--metrics-port", "99999"],
            [
                ("port", "'x'", "flag --port", "use a whole number from 0 to 65535"),
                ("metrics_port", "'99999'", "flag --metrics-port", "from 0 to 65535"),
            ],
        ),
    ],
)
def test_bad_flags_print_one_clear_line_each_and_exit_2(
    argv: list[str], expected: list[tuple[str, str, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert_clear(capsys.readouterr().err, expected)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"LOGIC_WORKERS": "zero"},
            [("logic_workers", "'zero'", f"environment {ENV_PREFIX}LOGIC_WORKERS", "whole number")],
        ),
        (
            {"IDLE_TIMEOUT": "-1"},
            [("idle_timeout", "'-1'", "IDLE_TIMEOUT", "use a number of at least 0")],
        ),
        (
            {"PROXY_PROTOCOL": "maybe"},
            [("proxy_protocol", "'maybe'", "PROXY_PROTOCOL", "use true or false")],
        ),
        (
            {"TRUSTED_PROXIES": "10.0.0.0/8"},  # not a JSON list
            [("trusted_proxies", "'10.0.0.0/8'", "TRUSTED_PROXIES", '["10.0.0.0/8"]')],
        ),
        (
            {"TRUSTED_PROXIES": '["10.0.0.0/33"]'},
            [("trusted_proxies", "['10.0.0.0/33']", "TRUSTED_PROXIES", "CIDRs such as")],
        ),
        (
            {"CLUSTER_URL": "redis://:hunter2@h:x/0"},
            [("cluster_url", "***", "CLUSTER_URL", "bad port")],
        ),
    ],
)
def test_bad_environment_values_print_one_clear_line_each(
    env: dict[str, str],
    expected: list[tuple[str, str, str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"{ENV_PREFIX}{name}", value)
    assert cli.main(["print-config"]) == 2
    err = capsys.readouterr().err
    assert_clear(err, expected)
    assert "hunter2" not in err


def test_bad_config_file_values_name_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "server.toml"
    config.write_text('port = 70000\nloop = "trio"\nsend_workers = 2\n', encoding="utf-8")
    assert cli.main(["serve", "--config", str(config)]) == 2
    where = f"config file {config}"
    assert_clear(
        capsys.readouterr().err,
        [
            ("port", "70000", where, "use a whole number from 0 to 65535"),
            ("loop", "'trio'", where, "use one of uvloop, asyncio"),
        ],
    )
    config.write_text("port = [", encoding="utf-8")
    assert cli.main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid TOML" in err and str(config) in err


def test_a_check_across_settings_prints_its_own_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"{PROG}: settings: workers = 2 needs cluster_url: each worker process is a cluster "
        "node, and nodes share rooms and logins through Redis (set cluster_url, or workers = 1)"
    ]


def test_bad_setting_in_a_real_process_has_no_traceback() -> None:
    result = run_command("serve", "--port", "not-a-port")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{PROG}: port = 'not-a-port' (flag --port): input should be a valid integer, unable "
        "to parse string as an integer; use a whole number from 0 to 65535"
    ]


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--config", "nowhere.toml"]) == 2
    assert "nowhere.toml" in capsys.readouterr().err


# --- proto -----------------------------------------------------------------------


def test_proto_writes_the_catalogue_schema(isolated: Path) -> None:
    assert cli.main(["proto"]) == 0
    schema = (isolated / "proto" / "messages.proto").read_text(encoding="utf-8")
    assert 'syntax = "proto3";' in schema
    assert f"package {PACKAGE};" in schema
    for message in catalog:
        assert f"message {message.__name__} " in schema
    custom = isolated / "out" / "game.proto"
    assert cli.main(["proto", "--out", str(custom)]) == 0
    assert custom.read_text(encoding="utf-8") == schema


def test_json_schema_describes_every_message(isolated: Path) -> None:
    assert cli.main(["json-schema"]) == 0
    schema = json.loads((isolated / "proto" / "messages.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"].startswith("https://json-schema.org/")
    defs = schema["$defs"]
    assert [ref["$ref"] for ref in schema["oneOf"]] == [f"#/$defs/{m.__name__}" for m in catalog]
    for message in catalog:
        entry = defs[message.__name__]
        assert entry["x-msg-id"] == message.__msg_id__
        fields = msgspec.structs.fields(message)
        assert list(entry.get("properties", {})) == [f.name for f in fields]
        assert entry.get("required", []) == [f.name for f in fields if f.required]
        if message.__reply__ is not None:
            assert entry["x-reply"] == message.__reply__.__name__
    user = defs["LoginResp"]["properties"]["user"]["$ref"].rsplit("/", 1)[1]
    assert defs[user]["properties"]["counter"]["type"] == "integer"
    custom = isolated / "out" / "game.json"
    assert cli.main(["json-schema", "--out", str(custom)]) == 0
    assert json.loads(custom.read_text(encoding="utf-8")) == schema


# --- healthcheck -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_healthcheck_passes_against_a_live_server(protocol: str) -> None:
    async with running_server(router, catalog=catalog, setup=setup, protocol=protocol) as server:
        argv = ["healthcheck", "--port", str(server.port), "--protocol", protocol]
        assert await asyncio.to_thread(cli.main, argv) == 0


def test_healthcheck_fails_without_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert cli.main(["healthcheck", "--port", str(free_port()), "--timeout", "1"]) == 1
    assert time.monotonic() - started < 10
    assert "unhealthy" in capsys.readouterr().err


async def test_healthcheck_fails_on_a_silent_server() -> None:
    """A port that accepts but never answers is unhealthy within the timeout."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        started = time.monotonic()
        argv = ["healthcheck", "--port", str(port), "--timeout", "0.5"]
        assert await asyncio.to_thread(cli.main, argv) == 1
        assert time.monotonic() - started < 5


# --- serve -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "protocol", "stop_signal"),
    [
        ((), "{{ cookiecutter.protocol }}", signal.SIGTERM),
        (("--protocol", "msgpack", "--resource-model", "1"), "msgpack", signal.SIGINT),
    ],
    ids=["defaults-sigterm", "flags-ctrl-c"],
)
def test_serve_logs_settings_and_stops_gracefully(
    flags: tuple[str, ...], protocol: str, stop_signal: signal.Signals
) -> None:
    ws_port = free_port()  # ws_port 0 is off: a WebSocket port has to be chosen
    # The project's own protocol unless a flag says otherwise (None: no override).
    proc = ServeProcess(Path.cwd(), *flags, protocol=None, ws_port=str(ws_port))
    try:
        proc.start_blocking(STARTUP_TIMEOUT)
        port = proc.port
        check = run_command("healthcheck", "--port", str(port), "--protocol", protocol)
        assert check.returncode == 0, check.stderr
        code, log = proc.stop(stop_signal, timeout=STARTUP_TIMEOUT)
    finally:
        proc.kill()
    assert code == 0, log
    assert "starting with settings" in log
    assert " port=0 " in log and f"protocol={protocol}" in log  # the settings as given
    assert f"listening on 127.0.0.1:{port}" in log  # the port the kernel chose
    assert f"WebSocket on 127.0.0.1:{ws_port}/" in log
    if flags:
        assert "resource_model=per_link" in log
    assert "Traceback" not in log


def test_serve_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_command("serve", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert "cannot serve" in result.stderr and "Traceback" not in result.stderr


# --- wiring --------------------------------------------------------------------------


def test_entry_points_and_help() -> None:
    assert cli.client_main is client_cli.client_main
    result = run_command("--help")
    assert result.returncode == 0
    for sub in ("serve", "healthcheck", "print-config", "proto"):
        assert sub in result.stdout
    version = run_command("--version")
    assert version.returncode == 0 and version.stdout.startswith(f"{SLUG} ")
