"""Messages the framework itself speaks: keep-alive pings and error replies.

Their ids are part of the wire contract of every generated game (go-sgs
example ids 1-6 stay free for the game's own login and business messages).
"""

from __future__ import annotations

from .message import Message

PING_ID = 7
PONG_ID = 8
ERROR_ID = 99


class PongResp(Message, msg_id=PONG_ID):
    client_time_ms: int = 0
    server_time_ms: int = 0


class PingReq(Message, msg_id=PING_ID, reply=PongResp):
    client_time_ms: int = 0


class Error(Message, msg_id=ERROR_ID):
    """Answer to a request that failed; ``msg_id`` names the failed request's id."""

    code: str
    message: str = ""
    msg_id: int = 0
