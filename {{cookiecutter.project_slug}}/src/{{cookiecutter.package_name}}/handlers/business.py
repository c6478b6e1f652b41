"""The go-sgs business request: add two numbers, count the call per account."""

from __future__ import annotations

from ..messages import BusinessReq, BusinessResp
from ..sgs import Context, Router
from .state import ACCOUNT_KEY, state_of

router = Router()


@router.on(BusinessReq)
async def business(ctx: Context, msg: BusinessReq) -> BusinessResp:
    """Reply ``value1 + value2`` under the request's key and bump the user's counter.

    The auth middleware guarantees a logged-in link, so the account is there.
    """
    account: str = ctx.session[ACCOUNT_KEY]
    counters = state_of(ctx.server).counters
    counters[account] = counters.get(account, 0) + 1
    return BusinessResp(key=msg.key, result=msg.value1 + msg.value2)
