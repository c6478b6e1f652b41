"""The go-sgs business request: add two numbers, count the call per account."""

from __future__ import annotations

from ..messages import BusinessReq, BusinessResp
from ..sgs import Context, Router
from .state import COUNTER, player_of

router = Router()


@router.on(BusinessReq)
def business(ctx: Context, msg: BusinessReq) -> BusinessResp:
    """Reply ``value1 + value2`` under the request's key and bump the player's counter.

    The login check guarantees a logged-in link. The counter lives in the
    player's state: assigning to it marks the state dirty, and the store
    makes it durable (within ``store_flush_interval``, or before this reply
    leaves with ``store_sync = "always"``).
    """
    state = player_of(ctx.link).state
    state[COUNTER] = state.get(COUNTER, 0) + 1
    return BusinessResp(key=msg.key, result=msg.value1 + msg.value2)
