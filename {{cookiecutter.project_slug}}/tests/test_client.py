"""GameClient, the robot report and the ``-client`` command against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import time
from collections.abc import AsyncIterator

import pytest

from testkit import until

from {{ cookiecutter.package_name }}.client import (
    GameClient,
    RobotReport,
    run_robots,
)
from {{ cookiecutter.package_name }}.client_cli import (
    DEFAULT_PROTOCOL,
    ProgressBar,
    client_main,
)
from {{ cookiecutter.package_name }}.handlers import (
    auth,
    echo,
    rooms,
    router,
    setup,
)
from {{ cookiecutter.package_name }}.messages import (
    BusinessReq,
    BusinessResp,
    RoomMessage,
)
from {{ cookiecutter.package_name }}.sgs import (
    Context,
    RemoteError,
    Router,
    Server,
)
from {{ cookiecutter.package_name }}.sgs.protocol import PROTOCOLS
from {{ cookiecutter.package_name }}.sgs.resume import TokenKeeper
from {{ cookiecutter.package_name }}.sgs.testing import running_server

TIMEOUT = 5.0
ALL_PROTOCOLS = pytest.mark.parametrize("protocol", list(PROTOCOLS))


@contextlib.asynccontextmanager
async def game_server(
    protocol: str = DEFAULT_PROTOCOL, app_router: Router = router
) -> AsyncIterator[Server]:
    async with running_server(app_router, setup=setup, protocol=protocol) as server:
        yield server


def client_for(server: Server, protocol: str = DEFAULT_PROTOCOL) -> GameClient:
    return GameClient("127.0.0.1", server.port, protocol=protocol, timeout=TIMEOUT)


async def run_cli(*argv: str) -> int:
    """Run the client command in a thread: it runs its own event loop, as in a shell."""
    return await asyncio.to_thread(client_main, list(argv))


def wrong_business_router() -> Router:
    """The game with a business handler that answers a wrong result."""
    bad = Router()

    @bad.on(BusinessReq)
    async def off_by_one(ctx: Context, msg: BusinessReq) -> BusinessResp:
        return BusinessResp(key=msg.key, result=msg.value1 + msg.value2 + 1)

    app = Router()
    app.use(auth.require_login)
    for child in (auth.router, echo.router, rooms.router, bad):
        app.include(child)
    return app


@ALL_PROTOCOLS
async def test_game_client_requests(protocol: str) -> None:
    async with game_server(protocol) as server, client_for(server, protocol) as client:
        assert await client.echo("héllo") == "héllo"
        before = int(time.time() * 1000)
        pong = await client.ping()
        assert before <= pong.client_time_ms <= pong.server_time_ms + 1000
        assert abs(pong.server_time_ms - before) < 60_000
        user = await client.login("carol")
        assert (user.account_id, user.counter) == ("carol", 0)
        assert client.account_id == "carol"
        assert (await client.login("carol")).counter == 0, "logging in again as oneself is fine"
        with pytest.raises(RemoteError) as info:
            await client.login("mallory")
        assert info.value.code == "already_logged_in"
        resp = await client.business(-7, 2**40, -3)
        assert (resp.key, resp.result) == (-7, 2**40 - 3)
        with pytest.raises(RemoteError) as info:
            await client.leave()
        assert info.value.code == "not_in_room"
        assert (await client.join("a")).members == ["carol"]
        assert (await client.join("b")).room == "b", "joining another room leaves the first"
        assert (await client.leave()).room == "b"


async def test_login_rejects_bad_account() -> None:
    async with game_server() as server, client_for(server) as client:
        for account in ("", "x" * 65):
            with pytest.raises(RemoteError) as info:
                await client.login(account)
            assert info.value.code == "bad_account"


async def test_push_callbacks_may_be_async() -> None:
    async with game_server() as server, client_for(server) as client:
        heard: asyncio.Queue[RoomMessage] = asyncio.Queue()
        client.on_room_message(heard.put)
        await client.login("dave")
        await client.join("den")
        await client.say("async ok")
        msg = await asyncio.wait_for(heard.get(), TIMEOUT)
        assert (msg.room, msg.sender, msg.text) == ("den", "dave", "async ok")


async def test_run_robots_reports_progress() -> None:
    steps: list[int] = []
    async with game_server() as server:
        report = await run_robots(
            "127.0.0.1",
            server.port,
            protocol=server.settings.protocol,
            robots=3,
            requests=2,
            progress=steps.append,
        )
    assert report.ok and report.failures == []
    assert sum(steps) == report.requests == 3 * (2 + 3)
    assert report.msgs_per_s > 0


async def test_run_robots_catches_wrong_results() -> None:
    async with game_server(app_router=wrong_business_router()) as server:
        report = await run_robots(
            "127.0.0.1", server.port, protocol=server.settings.protocol, robots=2, requests=3
        )
    assert not report.ok
    assert report.errors == 2
    assert all("RobotFailure" in failure and "result=" in failure for failure in report.failures)


def test_robot_report_percentiles() -> None:
    latencies = [i / 1000 for i in range(100, 0, -1)]
    report = RobotReport(robots=1, requests=100, elapsed=2.0, latencies=latencies)
    assert report.msgs_per_s == 50
    assert report.percentile(50) == 0.050
    assert report.percentile(90) == 0.090
    assert report.percentile(99) == 0.099
    assert report.percentile(100) == 0.100
    assert RobotReport(robots=0).percentile(50) == 0.0
    summary = report.summary()
    assert "p50 50.00 ms" in summary and "max 100.00 ms" in summary


@ALL_PROTOCOLS
async def test_cli_ping_echo_login(protocol: str, capsys: pytest.CaptureFixture[str]) -> None:
    async with game_server(protocol) as server:
        common = ("--port", str(server.port), "--protocol", protocol)
        assert await run_cli(*common, "ping") == 0
        assert await run_cli(*common, "echo", "round trip") == 0
        assert await run_cli(*common, "login", "erin") == 0
        assert await run_cli(*common, "login", "erin") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"pong from 127.0.0.1:{server.port} in ")
    assert out[1:] == ["round trip", "logged in as erin, counter 0", "logged in as erin, counter 0"]


async def test_cli_chat(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n\nsecond line\n"))
    async with game_server() as server, client_for(server) as listener:
        heard: list[RoomMessage] = []
        listener.on_room_message(heard.append)
        await listener.login("listener")
        await listener.join("lounge")
        code = await run_cli("--port", str(server.port), "chat", "lounge", "--account", "ty")
        await listener.echo("sync")
    assert code == 0
    out = capsys.readouterr().out
    assert "* ty joined lounge: listener, ty" in out
    assert "[lounge] ty: hello\n[lounge] ty: second line\n" in out
    assert out.rstrip().endswith("* ty logged out")
    assert [(m.sender, m.text) for m in heard] == [("ty", "hello"), ("ty", "second line")]


async def test_cli_robots(capsys: pytest.CaptureFixture[str]) -> None:
    async with game_server() as server:
        port = str(server.port)
        assert await run_cli("--port", port, "robots", "--robots", "4", "--requests", "3") == 0
    out = capsys.readouterr()
    assert "requests   24" in out.out and "errors     0" in out.out
    assert "#" not in out.err, "no progress bar when stderr is not a terminal"


async def test_cli_robots_drop_rate_resumes(capsys: pytest.CaptureFixture[str]) -> None:
    async with game_server() as server:
        port = str(server.port)
        argv = ["--port", port, "robots", "--robots", "4", "--requests", "10", "--seed", "3"]
        assert await run_cli(*argv, "--drop-rate", "0.5") == 0
        with pytest.raises(SystemExit):  # refused: not a rate
            await run_cli(*argv, "--drop-rate", "2")
    out = capsys.readouterr()
    assert "errors     0" in out.out and "drops " in out.out
    assert "must be between 0 and 1" in out.err


async def test_cli_robots_play_the_arena(capsys: pytest.CaptureFixture[str]) -> None:
    async with game_server() as server:
        argv = ["--port", str(server.port), "robots", "--game", "arena", "--robots", "5"]
        assert await run_cli(*argv, "--moves", "10") == 0
    out = capsys.readouterr().out
    # login, JoinOrCreate, LeaveRoom, logout per robot; ArenaStates heard
    assert "requests   20" in out and "errors     0" in out
    pushes = int(out.split("pushes", 1)[1].split()[0])
    assert pushes >= 5 * 10


async def test_cli_connection_options_after_the_subcommand(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`<slug>-client robots --host H --port P`, the order the README shows."""
    async with game_server() as server:
        port = str(server.port)
        argv = ["robots", "--host", "127.0.0.1", "--port", port, "--robots", "2"]
        assert await run_cli(*argv, "--requests", "2") == 0
        assert await run_cli("--port", "1", "ping", "--port", port) == 0
    out = capsys.readouterr().out
    assert "robots     2" in out and "errors     0" in out and "pong from 127.0.0.1" in out


async def test_cli_robots_fail_on_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    async with game_server(app_router=wrong_business_router()) as server:
        port = str(server.port)
        code = await run_cli("--port", port, "--timeout", "2", "robots", "--robots", "2")
    assert code == 1
    assert "errors     2" in capsys.readouterr().out


async def test_cli_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        assert await run_cli("--port", str(port), "--timeout", "1", "ping") == 1
    assert capsys.readouterr().err.startswith(f"error: 127.0.0.1:{port}:")


async def test_cli_wrong_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    async with game_server("json") as server:
        port = str(server.port)
        assert (
            await run_cli("--port", port, "--protocol", "msgpack", "--timeout", "0.3", "ping") == 1
        )
    assert "does the server speak --protocol msgpack?" in capsys.readouterr().err


def test_progress_bar_draws_on_its_stream() -> None:
    out = io.StringIO()
    bar = ProgressBar(8, out)
    bar.advance(2)  # first call draws
    bar.advance(2)  # within 0.1 s of the last draw: skipped
    bar.finish()
    frames = out.getvalue().split("\r")[1:]
    assert frames[0] == "[" + "#" * 10 + "." * 30 + "] 2/8 requests"
    assert frames[-1] == "[" + "#" * 20 + "." * 20 + "] 4/8 requests\n"


async def test_a_resume_with_no_session_left_logs_in_afresh() -> None:
    """The server cannot resume (here: its token key changed, as a restarted one's
    does): the client logs in again as the same account and reports False."""
    async with game_server() as server:
        client = GameClient(
            "127.0.0.1", server.port, protocol=DEFAULT_PROTOCOL, timeout=TIMEOUT, resume=3
        )
        outcomes: asyncio.Queue[bool | None] = asyncio.Queue()
        async with client:
            client.on_resumed(outcomes.put_nowait)
            user = await client.login("phoenix")
            await client.business(1, 2, 3)
            await until(lambda: client._client.resume_token, what="the resume token")
            server.resumer.keeper = TokenKeeper()  # the old token no longer verifies
            refused = server.stats.errors.get("resume_token_invalid", 0)
            client.drop()
            assert await asyncio.wait_for(outcomes.get(), TIMEOUT) is False
            assert server.stats.errors.get("resume_token_invalid", 0) == refused + 1
            assert client.last_user is not None
            assert client.last_user.account_id == "phoenix"
            assert client.last_user.counter == user.counter + 1  # the state carried on
            resp = await client.business(4, 5, 6)
            assert resp.result == 11
            await client.logout()
