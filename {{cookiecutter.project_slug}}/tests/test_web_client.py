"""The browser client (web/) against a real server: node's test runner, then Chromium.

The node tests (web/test/*.test.js) run once per codec against one server
each. The browser test drives Debian's ``chromium`` with Playwright (no
browser download): it opens the demo page served by the WebSocket port, logs
in, joins a room and chats with a Python player connected over TCP. A
screenshot is saved under ``test-artifacts/`` (or ``$SGS_ARTIFACTS``).

Where node, the npm packages (``make web``) or chromium are missing these tests
skip with the reason, except under CI (``CI`` set), where that is a failure.
``SGS_BROWSER_TESTS=0`` skips the browser test on purpose.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
from pathlib import Path

import pytest

from testkit import free_port

from {{ cookiecutter.package_name }}.client import (
    GameClient,
)
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.messages import (
    RoomMessage,
    catalog,
)
from {{ cookiecutter.package_name }}.settings import (
    Settings,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)
from {{ cookiecutter.package_name }}.sgs.transport.catalog_js import (
    render_js_catalog,
)

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
TIMEOUT = 10.0
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require(what: str, found: object, how: str) -> None:
    """Skip with ``how`` when ``found`` is falsy, or fail under CI (which installs it)."""
    if not found:
        reason = f"{what} not available ({how})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must provide it")
        pytest.skip(reason)


def require_node() -> str:
    node = shutil.which("node")
    require("node", node, "install Node.js >= 18")
    require("web/node_modules", (WEB / "node_modules").is_dir(), "run `make web` to install them")
    return node  # type: ignore[return-value]


def game(**settings):
    return running_server(
        router,
        catalog=catalog,
        setup=functools.partial(setup, tick_interval=settings.pop("tick_interval", 60.0)),
        ws_port=free_port(),
        **settings,
    )


@pytest.mark.parametrize("protocol", ["json", "protobuf", "msgpack", "bson"])
async def test_js_client_against_the_server(protocol: str, tmp_path: Path) -> None:
    node = require_node()
    catalog_file = tmp_path / "catalog.js"
    async with game(protocol=protocol) as server:
        catalog_file.write_text(render_js_catalog(catalog, protocol=protocol), encoding="utf-8")
        env = {
            **os.environ,
            "SGS_WS_URL": f"ws://127.0.0.1:{server.ws_port}/",
            "SGS_CATALOG": str(catalog_file),
        }
        proc = await asyncio.create_subprocess_exec(
            node,
            "--test",
            *sorted(str(p) for p in (WEB / "test").glob("*.test.js")),
            cwd=WEB,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "# fail 0" in text, text


async def test_browser_demo_meets_a_tcp_player() -> None:
    if os.environ.get("SGS_BROWSER_TESTS") == "0":
        pytest.skip("SGS_BROWSER_TESTS=0")
    # Debian's chromium first; Chrome where that is what the machine has (GitHub's runners).
    chromium = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    require("chromium", chromium, "Debian: apt-get install chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # pragma: no cover - a dev dependency
        require("playwright", False, "pip install -e '.[dev]'")
    protocol = Settings.model_fields["protocol"].default
    if protocol != "json":
        require_node()  # the page loads the codec's npm package from web/node_modules
    artifacts = Path(os.environ.get("SGS_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)

    async with game(protocol=protocol, ws_static_dir=str(WEB), tick_interval=0.2) as server:
        tcp = GameClient("127.0.0.1", server.port, protocol=protocol, timeout=TIMEOUT)
        await tcp.connect()
        await tcp.login("tcp-player")
        await tcp.join("hall")
        heard: asyncio.Queue[RoomMessage] = asyncio.Queue()
        tcp.on_room_message(heard.put_nowait)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium,
                args=CHROMIUM_ARGS,
                headless=True,
                chromium_sandbox=False,
            )
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"http://127.0.0.1:{server.ws_port}/")
                await page.wait_for_selector("body[data-connected]", timeout=TIMEOUT * 1000)
                await page.fill("#account", "browser-player")
                await page.click("#login")
                await page.wait_for_selector("body[data-logged-in]", timeout=TIMEOUT * 1000)
                await page.fill("#room", "hall")
                await page.click("#join")
                await page.wait_for_selector("body[data-room=hall]", timeout=TIMEOUT * 1000)
                members = await page.text_content("#members")
                assert members is not None and "tcp-player" in members

                await page.fill("#text", "hello from chromium")
                await page.click("#say")
                said = await asyncio.wait_for(heard.get(), TIMEOUT)
                assert said == RoomMessage(
                    room="hall", sender="browser-player", text="hello from chromium"
                )

                await tcp.say("hello from python")
                await page.wait_for_selector(
                    "#messages li:has-text('tcp-player: hello from python')",
                    timeout=TIMEOUT * 1000,
                )
                await page.wait_for_function(
                    "document.getElementById('tick').textContent.startsWith('hall #')",
                    timeout=TIMEOUT * 1000,
                )
                await page.wait_for_function(
                    "document.getElementById('rtt').textContent.endsWith('ms')",
                    timeout=TIMEOUT * 1000,
                )
                await page.screenshot(path=str(artifacts / f"browser-demo-{protocol}.png"))
                assert errors == []
            finally:
                await browser.close()
        await tcp.close()


async def test_browser_tabs_and_robots_play_one_arena_across_two_nodes(redis_server) -> None:
    """Two tabs (one per node) and three robots (TCP, both nodes) in one match, drawn live."""
    if os.environ.get("SGS_BROWSER_TESTS") == "0":
        pytest.skip("SGS_BROWSER_TESTS=0")
    chromium = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    require("chromium", chromium, "Debian: apt-get install chromium")
    from playwright.async_api import async_playwright

    protocol = Settings.model_fields["protocol"].default
    if protocol != "json":
        require_node()
    artifacts = Path(os.environ.get("SGS_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    cluster = {"cluster_url": redis_server.url, "cluster_lease": 2.0, "store_url": "memory://"}
    async with (
        game(protocol=protocol, ws_static_dir=str(WEB), node_id="node-a", **cluster) as a,
        game(protocol=protocol, ws_static_dir=str(WEB), node_id="node-b", **cluster) as b,
    ):
        robots = [
            GameClient("127.0.0.1", node.port, protocol=protocol, timeout=TIMEOUT)
            for node in (a, b, a)
        ]
        first = robots[0]
        await first.connect()
        await first.login("robot-0")
        room = (await first.join_or_create("arena")).room_id

        async def walk(robot: GameClient) -> None:
            for seq in range(1, 10_000):
                await robot.move(("up", "right", "down", "left")[seq // 5 % 4], seq)
                await asyncio.sleep(0.05)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium,
                args=CHROMIUM_ARGS,
                headless=True,
                chromium_sandbox=False,
            )
            walkers: list[asyncio.Task[None]] = []
            try:
                pages = []
                for node, name in ((a, "tab-a"), (b, "tab-b")):
                    page = await browser.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                    await page.goto(f"http://127.0.0.1:{node.ws_port}/")
                    await page.wait_for_selector("body[data-connected]", timeout=TIMEOUT * 1000)
                    await page.fill("#account", name)
                    await page.click("#login")
                    await page.wait_for_selector("body[data-logged-in]", timeout=TIMEOUT * 1000)
                    await page.click("#arena-join")
                    await page.wait_for_selector(
                        f"body[data-arena='{room}']", timeout=TIMEOUT * 1000
                    )
                    pages.append((page, errors))
                for n, robot in enumerate(robots[1:], start=1):
                    await robot.connect()
                    await robot.login(f"robot-{n}")
                    assert (await robot.join_or_create("arena")).room_id == room
                walkers = [asyncio.create_task(walk(r)) for r in robots]
                for page, _ in pages:  # every tab sees all five players, tick after tick
                    await page.wait_for_selector(
                        "body[data-arena-players='5']", timeout=TIMEOUT * 1000
                    )
                page, _ = pages[1]
                for key in ("ArrowLeft", "ArrowLeft", "ArrowUp", "d"):
                    await page.keyboard.press(key)
                start = int(await page.get_attribute("body", "data-arena-tick") or 0)
                await page.wait_for_function(
                    f"Number(document.body.dataset.arenaTick) > {start + 10}",
                    timeout=TIMEOUT * 1000,
                )
                for (page, errors), node in zip(pages, ("a", "b"), strict=True):
                    await page.screenshot(
                        path=str(artifacts / f"browser-arena-{protocol}-node-{node}.png"),
                        full_page=True,
                    )
                    assert errors == []
            finally:
                for task in walkers:
                    task.cancel()
                await browser.close()
        for robot in robots:
            await robot.close()
