"""Login, logout and the middleware that keeps anonymous links out.

Same account on two links: the newer login wins. The older link is sent
``Error(code="replaced", msg_id=0)`` (msg_id 0: a notice that answers no
request, as the framework's idle timeout does) and closed, so a client knows
not to reconnect in a loop. The counter belongs to the account, so the new
link carries on where the old one stopped.
"""

from __future__ import annotations

import logging

from ..messages import EchoReq, Error, LoginReq, LoginResp, LogoutReq, LogoutResp, PingReq, User
from ..sgs import Context, HandlerError, Link, Message, Router
from ..sgs.middleware import Handler
from .rooms import leave_room
from .state import ACCOUNT_KEY, GameState, account_of, state_of

log = logging.getLogger(__name__)

router = Router()

#: Messages an anonymous link may send; everything else needs a login.
PUBLIC_MESSAGES: frozenset[type[Message]] = frozenset({LoginReq, LogoutReq, PingReq, EchoReq})

MAX_ACCOUNT_LEN = 64


async def require_login(ctx: Context, msg: Message, call_next: Handler) -> Message | None:
    """Answer Error ``not_logged_in`` to business and room messages from anonymous links."""
    if type(msg) not in PUBLIC_MESSAGES and account_of(ctx.link) is None:
        raise HandlerError("not_logged_in", f"log in before sending {type(msg).__name__}")
    return await call_next(ctx, msg)


@router.on(LoginReq)
async def login(ctx: Context, msg: LoginReq) -> LoginResp:
    """Bind the account to this link; a newer login replaces an older link."""
    account = msg.account_id
    if not account or len(account) > MAX_ACCOUNT_LEN:
        raise HandlerError("bad_account", f"account_id must be 1-{MAX_ACCOUNT_LEN} characters")
    current = account_of(ctx.link)
    if current is not None and current != account:
        raise HandlerError("already_logged_in", f"this link is logged in as {current!r}")
    state = state_of(ctx.server)
    previous = state.online.get(account)
    if previous is not None and previous is not ctx.link:
        log.info("%s logged in on link %s: closing link %s", account, ctx.link.id, previous.id)
        forget(state, previous)
        previous.send(Error(code="replaced", message=f"{account} logged in elsewhere", msg_id=0))
        previous.close("replaced")
    state.online[account] = ctx.link
    ctx.session[ACCOUNT_KEY] = account
    return LoginResp(user=User(account_id=account, counter=state.counters.get(account, 0)))


@router.on(LogoutReq)
async def logout(ctx: Context, msg: LogoutReq) -> LogoutResp:
    """Reply LogoutResp, then close the link; the framework flushes the reply first."""
    forget(state_of(ctx.server), ctx.link)
    ctx.close("logout")
    return LogoutResp()


def forget(state: GameState, link: Link) -> None:
    """Log ``link`` out: leave its room, drop it as its account's online link.

    A newer link of the same account is left alone, so the disconnect of a
    replaced link does not log out its successor.
    """
    leave_room(state, link)
    account = link.session.pop(ACCOUNT_KEY, None)
    if account is not None and state.online.get(account) is link:
        del state.online[account]
