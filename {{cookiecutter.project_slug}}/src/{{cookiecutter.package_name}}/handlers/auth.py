"""Login, logout and the check that keeps anonymous links out.

Same account on two links, on this node or on two nodes of a cluster: the
newer login wins. ``server.bind`` takes care of the cluster; the older link's
node runs :func:`replaced`, which sends ``Error(code="replaced", msg_id=0)``
(msg_id 0: a notice that answers no request, as the framework's idle timeout
does) and closes it, so a client knows not to reconnect in a loop. The
counter is in the player's state, which the framework hands over with the
login, so the new link carries on where the old one stopped.
"""

from __future__ import annotations

import functools
import logging

from ..messages import (
    EchoReq,
    JoinRoomResp,
    LoginReq,
    LoginResp,
    LogoutReq,
    LogoutResp,
    PingReq,
    ResumeReq,
    RoomJoined,
    User,
)
from ..sgs import (
    CloseReason,
    Context,
    Deadlines,
    HandlerError,
    Link,
    Message,
    Router,
    Server,
    close_reason,
)
from ..sgs.rooms import manager_of
from .rooms import CHAT, leave_room
from .state import ACCOUNT_KEY, COUNTER, PLAYER_KEY, account_of

log = logging.getLogger(__name__)

router = Router()

#: Messages an anonymous link may send; everything else needs a login.
PUBLIC_MESSAGES: frozenset[type[Message]] = frozenset(
    {LoginReq, LogoutReq, PingReq, EchoReq, ResumeReq}
)

MAX_ACCOUNT_LEN = 64

#: This game's own close reasons (labels of sgs_links_closed).
LOGOUT = close_reason("logout")
LOGIN_TIMEOUT = close_reason("login_timeout")


def require_login(ctx: Context, msg: Message) -> None:
    """Answer Error ``not_logged_in`` to business and room messages from anonymous links.

    A check, not middleware: it only decides, so it is a plain function that
    raises to refuse, and the handler behind it needs no wrapper.
    """
    if type(msg) not in PUBLIC_MESSAGES and account_of(ctx.link) is None:
        raise HandlerError("not_logged_in", f"log in before sending {type(msg).__name__}")


@router.on(LoginReq)
async def login(ctx: Context, msg: LoginReq) -> LoginResp:
    """Bind the account to this link; a newer login replaces an older link anywhere."""
    account = msg.account_id
    if not account or len(account) > MAX_ACCOUNT_LEN:
        raise HandlerError("bad_account", f"account_id must be 1-{MAX_ACCOUNT_LEN} characters")
    current = account_of(ctx.link)
    if current is not None and current != account:
        raise HandlerError("already_logged_in", f"this link is logged in as {current!r}")
    player = await ctx.server.bind(ctx.link, account)
    ctx.session[ACCOUNT_KEY] = account
    ctx.session[PLAYER_KEY] = player
    return LoginResp(user=User(account_id=account, counter=player.state.get(COUNTER, 0)))


@router.on(LogoutReq)
def logout(ctx: Context, msg: LogoutReq) -> LogoutResp:
    """Reply LogoutResp, then close the link; the framework flushes the reply first."""
    forget(ctx.server, ctx.link)
    ctx.server.unbind(ctx.link)
    ctx.close(LOGOUT)
    return LogoutResp()


async def snapshot(server: Server, link: Link) -> None:
    """A resume that could not replay: the player's whole state, as a fresh login shows it.

    LoginResp with the counter, then the rooms it is still in: RoomJoined for
    its match, JoinRoomResp with the members for its chat room.
    """
    player = server.player_of(link)
    if player is None:
        return
    link.send(LoginResp(user=User(account_id=player.key, counter=player.state.get(COUNTER, 0))))
    manager = manager_of(server)
    for room_type, room_id in manager.rooms_of(link):
        if room_type == CHAT:
            labels = await server.group(f"room:{room_id}").labels()
            link.send(JoinRoomResp(room=room_id, members=sorted(labels)))
        else:
            link.send(RoomJoined(room_id=room_id, room_type=room_type))


def forget(server: Server, link: Link) -> None:
    """Log ``link`` out of the game: leave its room, drop its login from the session.

    The binding itself (and the player's state) is the framework's: it ends
    on logout, on disconnect, or when a newer login replaced this link.
    """
    leave_room(server, link)
    link.session.pop(ACCOUNT_KEY, None)
    link.session.pop(PLAYER_KEY, None)


def login_clock(server: Server) -> Deadlines | None:
    """Give each new link ``auth_timeout`` seconds to log in; None when it is 0.

    A connection that never logs in holds a slot that a player could use; a
    script opening many of them is the cheapest flood there is. One timer for
    every link (:class:`~..sgs.Deadlines`: a link costs a list entry, not a
    timer handle and a closure); the check runs on the link's worker, so it
    never races a login, and a link that logged in or left is simply skipped.
    """
    timeout = getattr(server.settings, "auth_timeout", 0.0)
    if timeout <= 0:
        return None

    def expired(link_id: object) -> None:
        link = server.links.get(link_id)  # type: ignore[call-overload]
        if link is not None and link.is_open and not logged_in(server, link):
            server.post(functools.partial(_login_timed_out, server, link, timeout), link)

    return Deadlines(timeout, expired)


def logged_in(server: Server, link: Link) -> bool:
    """``link`` logged in, or carries a player it resumed (here, or held on another node)."""
    return account_of(link) is not None or server.resumer.carrying(link)


def _login_timed_out(server: Server, link: Link, timeout: float) -> None:
    if link.is_open and not logged_in(server, link):
        log.info("link %s did not log in within %.0fs: closing", link.id, timeout)
        server.outcomes.error(
            link,
            "login_timeout",
            f"no login within auth_timeout ({timeout:g}s)",
            close=LOGIN_TIMEOUT,
        )


async def replaced(server: Server, link: Link, account: str) -> None:
    """A newer login of ``account`` (here or on another node) took over: tell, then close."""
    log.info("%s logged in elsewhere: closing link %s", account, link.id)
    forget(server, link)
    server.outcomes.error(
        link, "replaced", f"{account} logged in elsewhere", close=CloseReason.REPLACED
    )
