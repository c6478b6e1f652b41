"""`{{ cookiecutter.project_slug }} state get|export|import`: read and back up player state.

Ops commands that talk to the store named by ``store_url`` (from --config, the
environment or the TOML file, exactly as ``serve`` reads it) and never open
the game port, so they run beside a live server or against a stopped one.

- ``get ACCOUNT`` prints ``{"key", "epoch", "data"}`` as JSON; exit 1 if absent.
- ``export [--out FILE]`` writes one such object per line (JSON lines).
- ``import FILE`` reads JSON lines (``-`` for stdin). Every line is checked
  before anything is written; a bad line is reported with its number, exit 2.
  Import overwrites: run it while the players concerned are not logged in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .settings import Settings
from .sgs.store import Backend, Row, StoreError, make_backend

PROG = "{{ cookiecutter.project_slug }}"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ImportFileError(ValueError):
    """A line of an import file is not a state record; the message names the line."""


def add_state_command(
    commands: Any, add_config_flag: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register ``state`` and its actions on the server command's subparsers."""
    state = commands.add_parser(
        "state", help="read, export or import stored player state (no game port)"
    )
    actions = state.add_subparsers(dest="state_action", required=True, metavar="ACTION")

    get = actions.add_parser("get", help="print one account's state and epoch as JSON")
    get.add_argument("account", help="the account (player key)")
    add_config_flag(get)
    get.set_defaults(func=cmd_state_get)

    export = actions.add_parser("export", help="write every stored state as JSON lines")
    export.add_argument("--out", type=Path, metavar="FILE", help="output file (default: stdout)")
    add_config_flag(export)
    export.set_defaults(func=cmd_state_export)

    load = actions.add_parser(
        "import", help="store the states of a JSON lines file (overwrites those keys)"
    )
    load.add_argument("file", help="a file written by `state export`, or - for stdin")
    add_config_flag(load)
    load.set_defaults(func=cmd_state_import)


def record(key: str, data: dict[str, Any], epoch: int) -> str:
    """One export line; ``state get`` prints the same object."""
    return json.dumps({"key": key, "epoch": epoch, "data": data}, ensure_ascii=False)


def parse_record(text: str, number: int) -> Row:
    """The ``(key, data, epoch)`` of one import line, or ImportFileError naming the line."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ImportFileError(f"line {number}: not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ImportFileError(f"line {number}: expected an object with key, epoch and data")
    key, epoch, data = value.get("key"), value.get("epoch", 0), value.get("data")
    if not isinstance(key, str) or not key:
        raise ImportFileError(f"line {number}: 'key' must be a non-empty string")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ImportFileError(f"line {number}: 'epoch' must be a non-negative integer")
    if not isinstance(data, dict):
        raise ImportFileError(f"line {number}: 'data' must be a JSON object")
    return key, data, epoch


def read_records(stream: TextIO) -> list[Row]:
    """Every record of ``stream``; blank lines are skipped."""
    return [
        parse_record(line, number) for number, line in enumerate(stream, start=1) if line.strip()
    ]


def _backend(settings: Settings, *, create: bool) -> Backend:
    if settings.store_url.startswith("memory:"):
        raise StoreError(
            "store_url is memory://: nothing outlives the server process, so there is "
            "nothing to read or import (set store_url to a sqlite:// or redis:// store)"
        )
    return make_backend(settings, create=create)


async def _with_backend(settings: Settings, create: bool, work: Callable[[Backend], Any]) -> Any:
    backend = _backend(settings, create=create)
    await backend.open()
    try:
        return await work(backend)
    finally:
        await backend.close()


def _run(settings: Settings, create: bool, work: Callable[[Backend], Any]) -> Any:
    return asyncio.run(_with_backend(settings, create, work))


def cmd_state_get(args: argparse.Namespace) -> int:
    settings = Settings.load(args.config)
    try:
        found = _run(settings, False, lambda backend: backend.get(args.account))
    except StoreError as exc:
        print(f"{PROG} state get: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if found is None:
        print(f"{PROG} state get: no state stored for {args.account!r}", file=sys.stderr)
        return EXIT_FAILED
    data, epoch = found
    print(json.dumps(json.loads(record(args.account, data, epoch)), indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_state_export(args: argparse.Namespace) -> int:
    settings = Settings.load(args.config)
    out: Path | None = args.out

    async def export(backend: Backend) -> int:
        count = 0
        stream = sys.stdout
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            stream = out.open("w", encoding="utf-8")
        try:
            async for key, data, epoch in backend.items():
                stream.write(record(key, data, epoch) + "\n")
                count += 1
        finally:
            if out is not None:
                stream.close()
        return count

    try:
        count = _run(settings, False, export)
    except (StoreError, OSError) as exc:
        print(f"{PROG} state export: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if out is not None:
        print(f"exported {count} player states to {out}", file=sys.stderr)
    return EXIT_OK


def cmd_state_import(args: argparse.Namespace) -> int:
    settings = Settings.load(args.config)
    try:
        if args.file == "-":
            rows = read_records(sys.stdin)
        else:
            with open(args.file, encoding="utf-8") as stream:
                rows = read_records(stream)
    except ImportFileError as exc:
        print(f"{PROG} state import: {args.file}: {exc}; nothing imported", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{PROG} state import: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def load(backend: Backend) -> str:
        for key, data, epoch in rows:
            await backend.put(key, data, epoch)
        return backend.describe

    try:
        where = _run(settings, True, load)
    except StoreError as exc:
        print(f"{PROG} state import: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"imported {len(rows)} player states into {where}", file=sys.stderr)
    return EXIT_OK
