"""Real client addresses behind load balancers: the PROXY protocol and X-Forwarded-For.

``header`` parses the PROXY header without I/O; ``trust`` decides whose
header or ``X-Forwarded-For`` is believed (``trusted_proxies``); ``gate``
reads the header off each new connection before it becomes a link.
"""

from .gate import ProxiedConnection, ProxiedLink, ProxyGate
from .header import ProxyHeader, ProxyHeaderError, ProxyHeaderReader
from .trust import ForwardedError, TrustedProxies

__all__ = [
    "ForwardedError",
    "ProxiedConnection",
    "ProxiedLink",
    "ProxyGate",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderReader",
    "TrustedProxies",
]
