"""Which peers may speak for a client: ``trusted_proxies`` and ``X-Forwarded-For``.

Only a peer inside one of the ``trusted_proxies`` networks may send a PROXY
header or an ``X-Forwarded-For`` that is believed; anyone else could claim
any address and walk around ``max_connections_per_ip``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForwardedError(ValueError):
    """An ``X-Forwarded-For`` from a trusted proxy that names no address."""


class TrustedProxies:
    """The ``trusted_proxies`` networks, and the client a chain of proxies speaks for."""

    __slots__ = ("networks",)

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(c, strict=False) for c in cidrs
        )

    def trusts(self, peer: Any) -> bool:
        """``peer`` (a peername tuple or an address) is inside a trusted network."""
        address = _address(peer)
        if address is None:
            return False
        return any(address in net for net in self.networks)

    def forwarded_client(self, peer: Any, forwarded: str | None) -> Any:
        """The client behind ``peer`` per ``X-Forwarded-For``, as a (host, 0) peername.

        Walks the list from the right (the hop nearest this server) past every
        trusted proxy; the first untrusted hop is the client. Hops that a
        trusted proxy did not add (left of the first untrusted one) are never
        read, so a client cannot choose its own address.
        """
        if not forwarded or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded.split(",")):
            if not self.trusts(client):
                break
            text = hop.strip()
            address = _address(text)
            if address is None:
                raise ForwardedError(f"X-Forwarded-For hop {text!r} is not an IP address")
            client = (str(address), 0)
        return client


def _address(peer: Any) -> Address | None:
    """The IP of a peername tuple or address text; IPv4-mapped IPv6 as IPv4."""
    text = peer[0] if isinstance(peer, tuple) and peer else peer
    if not isinstance(text, str):
        return None
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
