"""The WebSocket transport over real sockets: the same links, rooms and limits as TCP.

Every bad input is answered as documented in sgs/transport/ws.py, and the
links beside the offender keep working.
"""

from __future__ import annotations

import asyncio
import functools
import socket

import pytest
from picows import WSCloseCode, WSHandshakeError, WSMsgType

from testkit import free_port
from wskit import ws_peer

from {{ cookiecutter.package_name }}.client import (
    GameClient,
)
from {{ cookiecutter.package_name }}.handlers import (
    router,
    setup,
)
from {{ cookiecutter.package_name }}.messages import (
    EchoReq,
    EchoResp,
    Error,
    JoinRoomReq,
    LoginReq,
    RoomMessage,
    SayReq,
    catalog,
)
from {{ cookiecutter.package_name }}.sgs import (
    Server,
    get_codec,
)
from {{ cookiecutter.package_name }}.sgs.settings import (
    ResourceModel,
    ServerSettings,
)
from {{ cookiecutter.package_name }}.sgs.testing import (
    running_server,
)

TIMEOUT = 5.0


def game(**settings):
    """The sample game with a WebSocket port beside its TCP port."""
    settings.setdefault("ws_port", free_port())
    return running_server(
        router, catalog=catalog, setup=functools.partial(setup, tick_interval=60.0), **settings
    )


def frame(msg, protocol: str = "json") -> bytes:
    return get_codec(protocol, catalog).encode_frame(msg)


def decode(frames, protocol: str = "json"):
    codec = get_codec(protocol, catalog)
    return [codec.decode(msg_id, value) for msg_id, value in frames]


async def echo_works(server: Server) -> None:
    """A fresh WebSocket link still gets its echo: the server is unaffected."""
    peer = await ws_peer(server.ws_port)
    peer.send(frame(EchoReq(text="still here")))
    assert decode(await peer.frames(1)) == [EchoResp(text="still here")]
    peer.transport.disconnect()


# Every codec under the default model, every model under json (the transport is
# below both; the full codec x model matrix runs over TCP in test_game.py).
MATRIX = [("json", m.value) for m in ResourceModel] + [
    (p, "shared_all") for p in ("protobuf", "msgpack", "bson")
]


@pytest.mark.parametrize(("protocol", "model"), MATRIX, ids=[f"{p}-{m}" for p, m in MATRIX])
async def test_tcp_and_browser_players_meet_in_one_room(protocol: str, model: str) -> None:
    async with game(protocol=protocol, resource_model=model) as server:
        tcp = GameClient("127.0.0.1", server.port, protocol=protocol, timeout=TIMEOUT)
        await tcp.connect()
        await tcp.login("tcp-player")
        await tcp.join("hall")
        heard: asyncio.Queue[RoomMessage] = asyncio.Queue()
        tcp.on_room_message(heard.put_nowait)

        ws = await ws_peer(server.ws_port)
        # Three requests in one message: the server accepts several frames per message.
        ws.send(
            frame(LoginReq(account_id="ws-player"), protocol)
            + frame(JoinRoomReq(room="hall"), protocol)
            + frame(SayReq(text="hello from the browser"), protocol)
        )
        got = decode(await ws.frames(3), protocol)
        assert got[0].user.account_id == "ws-player"
        assert got[1].members == ["tcp-player", "ws-player"]
        assert got[2] == RoomMessage(room="hall", sender="ws-player", text="hello from the browser")
        said = await asyncio.wait_for(heard.get(), TIMEOUT)
        assert said == got[2]

        await tcp.say("hello from TCP")
        (pushed,) = decode(await ws.frames(1), protocol)
        assert pushed == RoomMessage(room="hall", sender="tcp-player", text="hello from TCP")
        assert server.stats.accepted == 2
        await tcp.close()
        ws.transport.disconnect()


async def test_replies_of_one_pass_may_share_a_message() -> None:
    async with game() as server:
        peer = await ws_peer(server.ws_port)
        n = 50
        peer.send(b"".join(frame(EchoReq(text=str(i))) for i in range(n)))
        got = decode(await peer.frames(n))
        assert [m.text for m in got] == [str(i) for i in range(n)]  # in request order
        assert peer.binary_messages <= n


async def test_text_message_is_answered_by_close_1003() -> None:
    async with game() as server:
        bystander = await ws_peer(server.ws_port)
        peer = await ws_peer(server.ws_port)
        peer.send(b'{"text": "hi"}', WSMsgType.TEXT)
        assert await peer.closed() is WSCloseCode.UNSUPPORTED_DATA
        assert server.stats.protocol_errors == 1
        bystander.send(frame(EchoReq(text="ok")))
        assert decode(await bystander.frames(1)) == [EchoResp(text="ok")]


async def test_partial_frame_gets_an_error_then_close_1007() -> None:
    async with game() as server:
        peer = await ws_peer(server.ws_port)
        whole = frame(EchoReq(text="first"))
        cut = frame(EchoReq(text="second"))[:-3]
        peer.send(whole + cut)
        # The whole frame is answered; then the error, however they were grouped.
        assert decode(await peer.frames(2)) == [
            EchoResp(text="first"),
            Error(
                code="partial_frame",
                message="a WebSocket message must carry whole TLV frames",
                msg_id=0,
            ),
        ]
        assert await peer.closed() is WSCloseCode.INVALID_TEXT
        assert server.stats.protocol_errors == 1
        await echo_works(server)


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragmented"])
async def test_oversized_message_is_refused_with_1009(fragmented: bool) -> None:
    async with game(max_frame_size=1024) as server:
        peer = await ws_peer(server.ws_port)
        if fragmented:  # each WebSocket frame is small; the message is not
            assert peer.transport is not None
            start = b"\x00\x00\x00\x09" + (1000).to_bytes(4, "big") + b"x" * 592
            peer.transport.send(WSMsgType.BINARY, start, fin=False)
            peer.transport.send(WSMsgType.CONTINUATION, b"x" * 600, fin=True)
        else:
            peer.send(b"\x00\x00\x00\x09" + (2000).to_bytes(4, "big") + b"x" * 2000)
        assert await peer.closed() is WSCloseCode.MESSAGE_TOO_BIG
        assert server.stats.protocol_errors == 1
        await echo_works(server)


async def test_tlv_header_above_max_frame_size_is_frame_too_large() -> None:
    async with game(max_frame_size=1024) as server:
        peer = await ws_peer(server.ws_port)
        peer.send(b"\x00\x00\x00\x09" + (5000).to_bytes(4, "big"))  # a header alone
        (err,) = decode(await peer.frames(1))
        assert err.code == "frame_too_large"
        await peer.closed()
        await echo_works(server)


async def test_refused_origin_gets_403_and_allowed_origin_connects() -> None:
    async with game(ws_allowed_origins=["http://game.example"]) as server:
        with pytest.raises(WSHandshakeError) as refused:
            await ws_peer(server.ws_port, extra_headers={"Origin": "http://evil.example"})
        assert refused.value.response is not None
        assert refused.value.response.status == 403
        assert server._ws is not None and server._ws.refused == 1
        peer = await ws_peer(server.ws_port, extra_headers={"Origin": "http://game.example"})
        peer.send(frame(EchoReq(text="welcome")))
        assert decode(await peer.frames(1)) == [EchoResp(text="welcome")]


async def test_wrong_path_is_404() -> None:
    async with game(ws_path="/play") as server:
        with pytest.raises(WSHandshakeError) as refused:
            await ws_peer(server.ws_port, "/")
        assert refused.value.response.status == 404
        peer = await ws_peer(server.ws_port, "/play")
        peer.send(frame(EchoReq(text="x")))
        assert decode(await peer.frames(1)) == [EchoResp(text="x")]


async def test_client_that_never_reads_is_closed_by_send_overflow() -> None:
    async with game(send_buffer_size=64 * 1024) as server:
        hog = await ws_peer(server.ws_port)
        assert hog.transport is not None
        hog.transport.underlying_transport.pause_reading()  # never reads again
        big = frame(EchoReq(text="y" * 16000))
        # ~6.4 MB of replies it will never read: more than the kernel's socket
        # buffers take, so the rest waits in the link's send queue.
        for _ in range(400):
            hog.send(big)
            if server.stats.closed:
                break
            await asyncio.sleep(0)
        for _ in range(200):
            if server.stats.closed:
                break
            await asyncio.sleep(0.05)
        assert server.stats.closed == 1
        assert not server.links or all(link.is_open for link in server.links.values())
        await echo_works(server)


async def test_handshake_timeout_closes_a_silent_socket() -> None:
    async with game(ws_handshake_timeout=0.3) as server:
        loop = asyncio.get_running_loop()
        sock = socket.create_connection(("127.0.0.1", server.ws_port))
        sock.setblocking(False)
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 100), 3.0)
        finally:
            sock.close()
        assert data == b""  # closed by the server, nothing said
        await echo_works(server)


async def test_idle_timeout_applies_to_websocket_links() -> None:
    async with game(idle_timeout=0.3) as server:
        peer = await ws_peer(server.ws_port)
        (err,) = decode(await peer.frames(1))
        assert err.code == "idle_timeout"
        await peer.closed()
        assert server.stats.idle_closed == 1


async def test_server_pings_and_drops_a_peer_that_never_pongs() -> None:
    async with game(ws_ping_interval=0.2) as server:
        polite = await ws_peer(server.ws_port)
        mute = await ws_peer(server.ws_port, enable_auto_pong=False)
        await mute.closed(timeout=3.0)
        polite.send(frame(EchoReq(text="alive")))
        assert decode(await polite.frames(1)) == [EchoResp(text="alive")]
        assert len(server.links) == 1


async def test_graceful_stop_closes_websocket_links_with_1001() -> None:
    async with game() as server:
        peer = await ws_peer(server.ws_port)
        peer.send(frame(EchoReq(text="last")))
        assert decode(await peer.frames(1)) == [EchoResp(text="last")]
        await server.stop()
        assert await peer.closed() is WSCloseCode.GOING_AWAY


async def test_static_files_and_live_catalogue(tmp_path) -> None:
    (tmp_path / "index.html").write_text("<h1>demo</h1>")
    (tmp_path / ".secret").write_text("no")
    async with game(ws_static_dir=str(tmp_path)) as server:

        async def get(path: str) -> tuple[int, bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.ws_port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = await asyncio.wait_for(reader.read(), TIMEOUT)
            writer.close()
            head, _, body = data.partition(b"\r\n\r\n")
            return int(head.split()[1]), body

        assert await get("/") == (200, b"<h1>demo</h1>")
        status, body = await get("/catalog.js")
        assert status == 200
        assert b"export class EchoReq" in body and b'PROTOCOL = "json"' in body
        for bad in ("/.secret", "/../etc/passwd", "/missing.js"):
            assert (await get(bad))[0] == 404


def test_ws_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="ws_path"):
        ServerSettings(ws_path="play")
    with pytest.raises(ValueError, match="TCP port"):
        ServerSettings(port=7000, ws_port=7000)
