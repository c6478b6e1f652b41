"""Session resumption: a dropped link's player is held for ``resume_window`` seconds.

See :mod:`.ring` for the per-link outbound sequence and its bounded replay
buffer, :mod:`.token` for the resume tokens, :mod:`.service` for holding a
dropped player and handing it to the link that resumes it,
:mod:`.relay` (with :mod:`.carrier` and :mod:`.wire`) for a resume on
another node, relayed through the node holding the session, and
:mod:`.messages` for the wire (ids 29-30).
"""

from .messages import (
    RESUME_EXPIRED,
    RESUME_TOKEN_INVALID,
    RESUME_TOKEN_USED,
    RESUME_WRONG_ACCOUNT,
    ResumeReq,
    ResumeResp,
)
from .ring import Ring
from .service import Resumer, router
from .token import TokenKeeper

__all__ = [
    "RESUME_EXPIRED",
    "RESUME_TOKEN_INVALID",
    "RESUME_TOKEN_USED",
    "RESUME_WRONG_ACCOUNT",
    "Resumer",
    "ResumeReq",
    "ResumeResp",
    "Ring",
    "TokenKeeper",
    "router",
]
