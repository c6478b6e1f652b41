"""The resumption wire messages (ids 29-30, the framework's, as the rooms' 18-26 are).

How a client follows the per-link outbound sequence, at no cost per frame:
every frame the server sends a logged-in link counts one, except
``ResumeResp`` itself, which instead tells the client where the count stands
(``seq``). So a client counts the frames it receives and sends that count as
``last_seq`` when it resumes; ``ResumeReq(token="")`` on a logged-in link
arms resumption (or asks where the count is) and is answered with a fresh
token and the current ``seq``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..message import Message

#: A resume token: base64 text of a signed, opaque value.
Token = Annotated[str, msgspec.Meta(max_length=256)]

#: The token's signature does not verify, or it is malformed (forged).
RESUME_TOKEN_INVALID = "resume_token_invalid"
#: The token was already spent (a resume rotated it), or the link is logged in as another account.
RESUME_TOKEN_USED = "resume_token_used"
#: The link is logged in as another account than the token's.
RESUME_WRONG_ACCOUNT = "resume_wrong_account"
#: No player is held for the token: the window passed (or the holding node is gone).
RESUME_EXPIRED = "resume_expired"


class ResumeResp(Message, msg_id=29):
    """``recovered``: the frames after ``last_seq`` follow (``replayed`` of them), in order.

    False: nothing is replayed; the player was kept (seats, bindings) but what
    it missed is gone, so the game sends a full snapshot after this reply.
    ``token`` is the next token (the one sent is spent); ``seq`` is the count
    the client continues from (frames after this reply are ``seq + 1``, ...).
    """

    recovered: bool = False
    token: str = ""
    seq: int = 0
    replayed: int = 0


class ResumeReq(Message, msg_id=30, reply=ResumeResp):
    """Resume the player of ``token`` on this link, replaying what followed ``last_seq``.

    With an empty token on a logged-in link: arm resumption and learn the
    current ``seq`` (``recovered`` is then True and nothing is replayed).
    """

    token: Token = ""
    last_seq: int = 0
