"""TLS on the game port, with certificates made by trustme for 127.0.0.1.

A TLS client plays; a plaintext client on the TLS port is closed without
harming anyone; client certificates are enforced when a CA is configured;
bad files stop start-up naming the setting; the client CLI and the health
check speak TLS too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from picows import WSError, ws_connect
from pydantic import ValidationError

import fwkit
from fwkit import EchoReq, RawConn, frame
from testkit import free_port
from wskit import WsPeer, ws_peer

from {{ cookiecutter.package_name }}.app import create_server
from {{ cookiecutter.package_name }}.client_cli import client_main
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    Settings,
)
from {{ cookiecutter.package_name }}.sgs import (
    Client,
    Server,
    ServerSettings,
)
from {{ cookiecutter.package_name }}.sgs.testing import running_server
from {{ cookiecutter.package_name }}.sgs.tls import client_context

PACKAGE = create_server.__module__.split(".")[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    player = ca.issue_cert("player-1@example.com")
    stranger = trustme.CA().issue_cert("player-2@example.com")
    files = {
        "ca": folder / "ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "client": folder / "client.pem",
        "stranger": folder / "stranger.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for blob in server.cert_chain_pems[1:]:
        blob.write_to_path(str(files["cert"]), append=True)
    server.private_key_pem.write_to_path(str(files["key"]))
    player.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    stranger.private_key_and_cert_chain_pem.write_to_path(str(files["stranger"]))
    return {name: str(path) for name, path in files.items()}


@contextlib.asynccontextmanager
async def tls_server(pki: dict[str, str], **settings: Any) -> AsyncIterator[Server]:
    async with running_server(
        fwkit.router,
        fwkit.catalog,
        protocol="json",
        tls_cert_file=pki["cert"],
        tls_key_file=pki["key"],
        **settings,
    ) as server:
        yield server


def tls_client(server: Server, context: Any) -> Client:
    return Client(
        "127.0.0.1", server.port or 0, catalog=fwkit.catalog, ssl=context, connect_timeout=5
    )


async def test_a_tls_client_plays(pki: dict[str, str]) -> None:
    async with tls_server(pki) as server, tls_client(server, client_context(pki["ca"])) as c:
        for k in range(5):
            reply = await c.request(EchoReq(seq=k, text="over TLS"), timeout=5)
            assert (reply.seq, reply.text) == (k, "over TLS")


async def test_plaintext_on_the_tls_port_is_closed_and_others_play_on(pki: dict[str, str]) -> None:
    async with (
        tls_server(pki, tls_handshake_timeout=1.0) as server,
        tls_client(server, client_context(pki["ca"])) as player,
    ):
        raw = await RawConn.open(server.port or 0)
        raw.send(frame(EchoReq.__msg_id__, b'{"seq":1,"text":"plain"}'))
        with contextlib.suppress(ConnectionResetError):
            answer = await raw.read_eof(timeout=5)
            assert b"plain" not in answer, "a plaintext frame is never answered in clear"
        silent = await RawConn.open(server.port or 0)  # says nothing: the handshake times out
        with contextlib.suppress(ConnectionResetError):
            await silent.read_eof(timeout=5)
        reply = await player.request(EchoReq(seq=9, text="still here"), timeout=5)
        assert reply.seq == 9
        assert not server.links.keys() - {next(iter(server.links))}, "only the player is a link"


async def test_a_client_that_does_not_trust_the_ca_is_refused(pki: dict[str, str]) -> None:
    async with tls_server(pki) as server:
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            async with tls_client(server, client_context()):
                pass


async def test_client_certificates_are_required_when_a_client_ca_is_set(
    pki: dict[str, str],
) -> None:
    async with tls_server(pki, tls_client_ca_file=pki["ca"]) as server:
        good = client_context(pki["ca"], cert_file=pki["client"])
        async with tls_client(server, good) as c:
            assert (await c.request(EchoReq(seq=1, text="mine"), timeout=5)).seq == 1
        for context in (client_context(pki["ca"]), client_context(pki["ca"], pki["stranger"])):
            with pytest.raises((OSError, asyncio.IncompleteReadError, ConnectionError)):
                async with tls_client(server, context) as c:
                    await c.request(EchoReq(seq=2, text="no"), timeout=5)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"tls_cert_file": "missing.pem", "tls_key_file": "missing.key"}, "tls_cert_file"),
        ({"tls_cert_file": "CERT"}, "tls_key_file"),
        ({"tls_key_file": "KEY"}, "tls_cert_file"),
        ({"tls_cert_file": "CERT", "tls_key_file": "CA"}, "tls_cert_file/tls_key_file"),
        (
            {"tls_cert_file": "CERT", "tls_key_file": "KEY", "tls_client_ca_file": "nope"},
            "tls_client_ca_file",
        ),
    ],
)
def test_bad_tls_settings_name_the_setting(
    pki: dict[str, str], settings: dict[str, str], named: str
) -> None:
    files = {"CERT": pki["cert"], "KEY": pki["key"], "CA": pki["ca"]}
    values = {name: files.get(value, value) for name, value in settings.items()}
    with pytest.raises(ValidationError, match=named):
        ServerSettings(**values)


def test_serve_with_a_missing_certificate_exits_2_naming_it(
    isolated: Path, pki: dict[str, str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", PACKAGE, "serve", "--port", "0"],
        env={**_env(), **tls_env("nowhere.pem", pki["key"])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "tls_cert_file" in result.stderr and "nowhere.pem" in result.stderr
    assert "Traceback" not in result.stderr


def _env() -> dict[str, str]:
    """This environment without any of this server's settings (and no metrics port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return {**env, f"{ENV_PREFIX}METRICS_PORT": "0"}


def tls_env(cert: str, key: str) -> dict[str, str]:
    return {f"{ENV_PREFIX}TLS_CERT_FILE": cert, f"{ENV_PREFIX}TLS_KEY_FILE": key}


async def test_client_cli_and_healthcheck_speak_tls(
    pki: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        tls_cert_file=pki["cert"],
        tls_key_file=pki["key"],
    )
    server = create_server(settings)
    await server.start()
    try:
        port = str(server.port)

        async def client(*argv: str) -> tuple[int, str, str]:
            code = await asyncio.to_thread(client_main, ["--port", port, *argv])
            out, err = capsys.readouterr()
            return code, out, err

        code, out, err = await client("--tls", "--ca", pki["ca"], "echo", "hi")
        assert code == 0, err
        assert "hi" in out
        code, out, err = await client("--tls", "echo", "hi")  # the system CAs do not know ours
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in err
        code, out, err = await client("--timeout", "2", "echo", "hi")  # plaintext to a TLS port
        assert code == 1 and err.startswith("error:")
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", PACKAGE, "healthcheck", "--host", "127.0.0.1", "--port", port),
            env={**_env(), **tls_env(pki["cert"], pki["key"])},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out_b, err_b = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err_b.decode()
        assert b"healthy" in out_b
    finally:
        await server.stop()


async def test_the_websocket_port_speaks_wss_with_the_same_certificate(
    pki: dict[str, str],
) -> None:
    async with tls_server(pki, ws_port=free_port()) as server:
        assert server.ws_port
        peer = await ws_peer_tls(server.ws_port, client_context(pki["ca"]))
        peer.send(frame(EchoReq.__msg_id__, b'{"seq":3,"text":"over wss"}'))
        ((msg_id, value),) = await peer.frames(1)
        assert msg_id == fwkit.EchoResp.__msg_id__ and b"over wss" in value
        assert peer.transport is not None
        peer.transport.disconnect()
        try:  # plain ws:// to the wss port: refused, or cut before any message
            plain = await ws_peer(server.ws_port, websocket_handshake_timeout=2)
        except (TimeoutError, OSError, ConnectionError, WSError):
            pass
        else:
            if plain is not None:  # picows may hand back no listener for a failed upgrade
                await plain.closed(timeout=10)
                assert plain.binary_messages == 0


async def ws_peer_tls(port: int, context: Any) -> WsPeer:
    _, peer = await ws_connect(WsPeer, f"wss://127.0.0.1:{port}/", ssl_context=context)
    return peer
