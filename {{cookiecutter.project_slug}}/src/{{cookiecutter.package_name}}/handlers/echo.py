"""Echo: the smallest request/reply pair, open to anonymous links."""

from __future__ import annotations

from ..messages import EchoReq, EchoResp
from ..sgs import Context, Router

router = Router()


@router.on(EchoReq)
def echo(ctx: Context, msg: EchoReq) -> EchoResp:
    """Send the text straight back."""
    return EchoResp(text=msg.text)
