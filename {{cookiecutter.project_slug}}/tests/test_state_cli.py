"""`state get|export|import`: the ops commands on a real SQLite file and a real Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from redis_server import RedisServer

from {{ cookiecutter.package_name }}.cli import (
    main,
)
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    Settings,
)
from {{ cookiecutter.package_name }}.sgs.store import (
    make_store,
)

PACKAGE = "{{ cookiecutter.package_name }}"
DEFAULT_DB = Path("var") / f"{PACKAGE}.db"

pytestmark = pytest.mark.usefixtures("isolated")


def seed(states: dict[str, tuple[dict[str, Any], int]], **settings: Any) -> None:
    """Store ``states`` the way the server does: load at an epoch, change, stop."""

    async def run() -> None:
        store = make_store(Settings(**settings))
        await store.start()
        for key, (data, epoch) in states.items():
            (await store.load(key, epoch)).update(data)
        assert await store.stop(timeout=5.0)

    asyncio.run(run())


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_state_is_a_command_with_three_actions(capsys: Any) -> None:
    with pytest.raises(SystemExit) as done:
        main(["state", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "get" in out and "export" in out and "import" in out


def test_get_prints_state_and_epoch(capsys: Any) -> None:
    seed({"ann": ({"counter": 3, "name": "Ann é"}, 1_700_000_000_000_123)})
    assert main(["state", "get", "ann"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {
        "key": "ann",
        "epoch": 1_700_000_000_000_123,
        "data": {"counter": 3, "name": "Ann é"},
    }


def test_get_of_an_absent_account_exits_1(capsys: Any) -> None:
    seed({"ann": ({"counter": 1}, 1)})
    assert main(["state", "get", "bob"]) == 1
    assert "no state stored for 'bob'" in capsys.readouterr().err


def test_get_without_a_database_creates_nothing(isolated: Path, capsys: Any) -> None:
    assert main(["state", "get", "ann"]) == 1
    err = capsys.readouterr().err
    assert "store_url" in err and "does not exist" in err and str(DEFAULT_DB) in err
    assert not (isolated / "var").exists()


def test_export_then_import_elsewhere_round_trips(isolated: Path, capsys: Any) -> None:
    states = {f"p{i}": ({"counter": i, "bag": ["x"] * i}, 1000 + i) for i in range(3)}
    seed(states)
    assert main(["state", "export"]) == 0
    exported = lines(capsys.readouterr().out)
    assert exported == [
        {"key": key, "epoch": epoch, "data": data} for key, (data, epoch) in states.items()
    ]
    assert main(["state", "export", "--out", "backup/state.jsonl"]) == 0
    assert "exported 3 player states" in capsys.readouterr().err
    assert lines((isolated / "backup" / "state.jsonl").read_text()) == exported

    # Import into another store, named by a TOML file as `serve --config` would read it.
    other = isolated / "other.toml"
    other.write_text('store_url = "sqlite:///restore/game.db"\n')
    assert main(["state", "import", "backup/state.jsonl", "--config", str(other)]) == 0
    assert "imported 3 player states" in capsys.readouterr().err
    assert main(["state", "get", "p2", "--config", str(other)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "key": "p2",
        "epoch": 1002,
        "data": {"counter": 2, "bag": ["x", "x"]},
    }


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "not JSON"),
        ('["a", "list"]', "expected an object"),
        ('{"key": "", "epoch": 1, "data": {}}', "'key'"),
        ('{"key": "x", "epoch": -1, "data": {}}', "'epoch'"),
        ('{"key": "x", "epoch": 1, "data": [1]}', "'data'"),
    ],
)
def test_import_names_the_bad_line_and_imports_nothing(
    isolated: Path, capsys: Any, bad: str, reason: str
) -> None:
    good = json.dumps({"key": "ann", "epoch": 1, "data": {"counter": 1}})
    (isolated / "in.jsonl").write_text(f"{good}\n\n{bad}\n{good}\n")
    assert main(["state", "import", "in.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "in.jsonl: line 3:" in err and reason in err and "nothing imported" in err
    assert not (isolated / DEFAULT_DB).exists()


def test_import_of_a_missing_file_exits_2(capsys: Any) -> None:
    assert main(["state", "import", "nope.jsonl"]) == 2
    assert "cannot read nope.jsonl" in capsys.readouterr().err


def test_memory_store_is_refused_clearly(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}STORE_URL", "memory://")
    assert main(["state", "export"]) == 1
    assert "memory://" in capsys.readouterr().err


def test_redis_store_import_get_export(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, isolated: Path, capsys: Any
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}STORE_URL", redis_server.url)
    records = [{"key": f"p{i}", "epoch": 7 + i, "data": {"counter": i}} for i in range(3)]
    (isolated / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["state", "import", "in.jsonl"]) == 0
    assert main(["state", "get", "p1"]) == 0
    assert json.loads(capsys.readouterr().out) == records[1]
    assert main(["state", "export"]) == 0
    assert sorted(lines(capsys.readouterr().out), key=lambda r: r["key"]) == records


def test_redis_down_is_a_clear_failure(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}STORE_URL", redis_server.url)
    monkeypatch.setenv(f"{ENV_PREFIX}CLUSTER_TIMEOUT", "0.5")
    redis_server.kill()
    assert main(["state", "get", "ann"]) == 1
    assert "redis" in capsys.readouterr().err.lower()


def test_the_installed_command_exports(isolated: Path) -> None:
    seed({"ann": ({"counter": 5}, 9)})
    done = subprocess.run(
        [sys.executable, "-m", PACKAGE, "state", "export"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout) == [{"key": "ann", "epoch": 9, "data": {"counter": 5}}]
