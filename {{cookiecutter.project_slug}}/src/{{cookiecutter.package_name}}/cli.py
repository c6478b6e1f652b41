"""The server command: serve, healthcheck, print-config, proto, json-schema.

The client command (ping, echo, login, chat, robots) lives in client_cli.py
and is re-exported here so both console scripts point at this module.

Settings problems are user errors, not crashes: one line per problem (the
setting, its value and where it came from, what is wrong, how to fix it; see
settings_errors.py) goes to stderr and the exit code is 2, with no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import __version__
from .client_cli import client_main
from .settings import ENV_PREFIX, Settings, SettingsFileError, load_with_origins
from .settings_errors import InvalidSettings, problems
from .sgs.metrics import MetricsPortError
from .sgs.metrics.scrape import Unreachable, http_get
from .sgs.store import StoreConfigError
from .state_cli import add_state_command

__all__ = ["client_main", "main"]

PROG = "{{ cookiecutter.project_slug }}"
PACKAGE = "{{ cookiecutter.package_name }}"
DEFAULT_PROTO_OUT = Path("proto") / "messages.proto"
DEFAULT_JS_OUT = Path("web") / "catalog.js"
DEFAULT_SCHEMA_OUT = Path("proto") / "messages.schema.json"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

log = logging.getLogger(PACKAGE)


def configure_logging(level: str, log_format: str = "text", node: str | None = None) -> None:
    from .sgs.logs import configure_logging as configure

    configure(level, log_format, node)


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"TOML settings file (default: ${ENV_PREFIX}CONFIG, else config/server.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Game server built on sgs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the game server until SIGTERM or Ctrl-C")
    serve.add_argument("--host", help="address to listen on")
    serve.add_argument("--port", help="TCP port (0 picks a free one)")
    serve.add_argument("--ws-port", help="WebSocket port (0 disables; default: the TCP port + 1)")
    serve.add_argument("--protocol", help="json, protobuf, msgpack or bson")
    serve.add_argument(
        "--resource-model",
        help="per_link, shared_logic, shared_logic_send, shared_all (or 1-4)",
    )
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    serve.add_argument("--log-format", help="text or json (one JSON object a line)")
    serve.add_argument("--metrics-port", help="HTTP port of /metrics, /healthz, /readyz (0: off)")
    serve.add_argument(
        "--agones",
        action="store_true",
        default=None,
        help="tell the Agones SDK sidecar Ready, Health and Shutdown (on a GameServer pod)",
    )
    serve.add_argument(
        "--workers",
        help="processes sharing the port (SO_REUSEPORT, Linux); more than 1 needs cluster_url",
    )
    _add_config_flag(serve)
    serve.set_defaults(func=cmd_serve)

    health = commands.add_parser(
        "healthcheck", help="exit 0 if the server answers a ping (and /readyz says ready)"
    )
    health.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    health.add_argument("--port", help="server port (default: the port setting)")
    health.add_argument("--protocol", help="codec (default: the protocol setting)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    health.add_argument(
        "--metrics-port", help="also ask /readyz on this port (default: metrics_port; 0: skip)"
    )
    _add_config_flag(health)
    health.set_defaults(func=cmd_healthcheck)

    top = commands.add_parser("top", help="live table of message rates and latency from /metrics")
    top.add_argument(
        "--metrics-url",
        help="the server's /metrics (default: http://127.0.0.1:<metrics_port>/metrics)",
    )
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top.add_argument("--count", type=int, default=0, help="stop after N refreshes (0: Ctrl-C)")
    _add_config_flag(top)
    top.set_defaults(func=cmd_top)

    show = commands.add_parser("print-config", help="show effective settings and their source")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_config_flag(show)
    show.set_defaults(func=cmd_print_config)

    proto = commands.add_parser("proto", help="write the protobuf schema of the catalogue")
    proto.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_PROTO_OUT,
        help=f"output file (default {DEFAULT_PROTO_OUT})",
    )
    proto.set_defaults(func=cmd_proto)

    schema = commands.add_parser(
        "json-schema", help="write the JSON Schema of the catalogue (json protocol)"
    )
    schema.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_SCHEMA_OUT,
        help=f"output file (default {DEFAULT_SCHEMA_OUT})",
    )
    schema.set_defaults(func=cmd_json_schema)

    web = commands.add_parser("web-catalog", help="write the JS message catalogue for web/")
    web.add_argument(
        "--out", type=Path, default=DEFAULT_JS_OUT, help=f"output file (default {DEFAULT_JS_OUT})"
    )
    _add_config_flag(web)
    web.set_defaults(func=cmd_web_catalog)
    add_state_command(commands, _add_config_flag)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings.load(
        args.config,
        host=args.host,
        port=args.port,
        ws_port=args.ws_port,
        protocol=args.protocol,
        resource_model=args.resource_model,
        log_level=args.log_level,
        log_format=args.log_format,
        metrics_port=args.metrics_port,
        workers=args.workers,
        agones=args.agones,
    )
    configure_logging(settings.log_level, settings.log_format, settings.node_id)
    if settings.workers > 1:
        return serve_workers(settings, args.config)
    log.info("%s %s starting with settings: %s", PROG, __version__, settings.summary())

    from .app import create_server  # the game code loads only when serving

    try:
        code = create_server(settings).run()
    except KeyboardInterrupt:  # Ctrl-C before the server installed its handlers
        log.info("interrupted")
        return EXIT_INTERRUPTED
    except MetricsPortError as exc:  # names metrics_port: no traceback
        log.error("cannot serve metrics: %s", exc)
        return EXIT_FAILED
    except OSError as exc:  # e.g. address already in use: say so, no traceback
        log.error("cannot serve on %s:%s: %s", settings.host, settings.port, exc)
        return EXIT_FAILED
    log.info("%s stopped (exit code %s)", PROG, code)
    return code


def serve_workers(settings: Settings, config: str | None) -> int:
    """`serve --workers N`: a supervisor running N `serve` processes on one port."""
    from .sgs.supervisor import Supervisor, SupervisorError

    log.info("%s %s supervising %d workers", PROG, __version__, settings.workers)
    command = [sys.executable, "-m", PACKAGE, "serve", *(["--config", config] if config else [])]
    try:
        return Supervisor(settings, command).run()
    except SupervisorError as exc:  # e.g. not Linux: a user error, no traceback
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def ping_server(
    host: str, port: int, protocol: str, timeout: float, tls: bool = False
) -> float:
    """Round-trip one PingReq; return the seconds it took or raise why it failed.

    With ``tls`` the probe speaks TLS without checking the certificate: it asks
    whether this process answers, on its own port, not who it is.
    """
    from .messages import catalog
    from .sgs import Client, PingReq, PongResp
    from .sgs.tls import client_context

    started = time.perf_counter()
    ping = PingReq(client_time_ms=int(time.time() * 1000))
    context = client_context(verify=False) if tls else None
    async with Client(
        host, port, protocol=protocol, catalog=catalog, connect_timeout=timeout, ssl=context
    ) as c:
        reply = await c.request(ping, timeout=timeout)
    if not isinstance(reply, PongResp):
        raise RuntimeError(f"expected PongResp, got {type(reply).__name__}")
    return time.perf_counter() - started


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """A ping through the game port, then /readyz: the first proves the whole message path
    answers, the second that the server still takes players (not draining, lease held)."""
    settings = Settings.load(
        args.config, port=args.port, protocol=args.protocol, metrics_port=args.metrics_port
    )
    target = f"{args.host}:{settings.port} ({settings.protocol})"
    try:
        elapsed = asyncio.run(
            asyncio.wait_for(
                ping_server(
                    args.host,
                    settings.port,
                    settings.protocol,
                    args.timeout,
                    tls=bool(settings.tls_cert_file),
                ),
                args.timeout,
            )
        )
    except Exception as exc:  # any failure is "unhealthy"; say which one
        reason = str(exc) or type(exc).__name__
        print(f"unhealthy: {target}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    ready = ""
    if settings.metrics_port:
        url = f"http://{_url_host(args.host)}:{settings.metrics_port}/readyz"
        try:
            status, body = http_get(url, args.timeout)
        except Unreachable as exc:
            print(f"unhealthy: {url}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if status != 200:
            print(f"unhealthy: {url}: HTTP {status}: {body.strip()}", file=sys.stderr)
            return EXIT_FAILED
        ready = f"; {url}: {body.strip()}"
    print(f"healthy: {target} answered a ping in {elapsed * 1000:.1f} ms{ready}")
    return EXIT_OK


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def cmd_top(args: argparse.Namespace) -> int:
    from .sgs.metrics.top import run

    url = args.metrics_url
    if not url:
        settings = Settings.load(args.config)
        if not settings.metrics_port:
            print(f"{PROG} top: metrics_port is 0 (disabled); pass --metrics-url", file=sys.stderr)
            return EXIT_USAGE
        url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    return run(url, interval=max(0.1, args.interval), count=max(0, args.count))


def _env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def cmd_print_config(args: argparse.Namespace) -> int:
    settings, origins, toml_file = load_with_origins(args.config)
    values = settings.model_dump(mode="json")
    if args.json:
        report: dict[str, Any] = {
            "config_file": str(toml_file) if toml_file else None,
            "env_prefix": ENV_PREFIX,
            "settings": {
                name: {"value": value, "source": origins[name], "env": _env_name(name)}
                for name, value in values.items()
            },
        }
        print(json.dumps(report, indent=2))
        return EXIT_OK
    rows = [(name, json.dumps(v), origins[name], _env_name(name)) for name, v in values.items()]
    header = ("setting", "value", "source", "environment variable")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"config file: {toml_file or 'none'}   env prefix: {ENV_PREFIX}")
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return EXIT_OK


def cmd_proto(args: argparse.Namespace) -> int:
    from .messages import catalog
    from .sgs import render_proto

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_proto(catalog, package=PACKAGE), encoding="utf-8")
    print(f"wrote {out}")
    return EXIT_OK


def cmd_json_schema(args: argparse.Namespace) -> int:
    """The JSON Schema of every message, for client developers in other languages."""
    from .messages import catalog
    from .sgs.schema import render_json_schema

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_json_schema(catalog, title=PACKAGE), encoding="utf-8")
    print(f"wrote {out}")
    return EXIT_OK


def cmd_web_catalog(args: argparse.Namespace) -> int:
    """The catalogue the browser client imports; the WebSocket port also serves it live."""
    from .messages import catalog
    from .sgs.transport.catalog_js import render_js_catalog

    settings = Settings.load(args.config)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_js_catalog(catalog, protocol=settings.protocol, ws_path=settings.ws_path)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the server command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InvalidSettings as exc:
        for line in exc.lines:
            print(f"{PROG}: {line}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:  # settings built without Settings.load
        for line in problems(exc, Settings, ENV_PREFIX):
            print(f"{PROG}: {line}", file=sys.stderr)
        return EXIT_USAGE
    except SettingsFileError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreConfigError as exc:  # names store_url and the path: no traceback
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `print-config | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
