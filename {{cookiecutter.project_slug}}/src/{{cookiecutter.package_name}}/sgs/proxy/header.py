"""The PROXY protocol header (HAProxy's v1 text and v2 binary), parsed without I/O.

A load balancer that speaks the PROXY protocol (HAProxy ``send-proxy``, an
AWS NLB with proxy protocol, nginx ``proxy_protocol on``, Kubernetes ingress
controllers for TCP) writes one header before the client's first byte,
naming the client's real address. :class:`ProxyHeaderReader` takes the
connection's first reads, in whatever pieces they arrive, and returns the
header and the bytes after it once the header is whole. Nothing here touches
a socket, so every malformed or partial shape is tested as a table and with
hypothesis (``tests/test_proxy_header.py``).

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

* v1: ``PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\\r\\n`` or
  ``PROXY UNKNOWN ...\\r\\n``; at most 107 bytes with the CRLF.
* v2: a 12-byte signature, version/command, family/transport, a 16-bit
  length, then the addresses and optional TLVs. ``LOCAL`` (the proxy's own
  health check) and the unspecified or UNIX families carry no client: the
  connection keeps the proxy's address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The spec's bound for a v1 line, CRLF included.
V1_MAX = 107
#: The v2 fixed part: signature, version/command, family/transport, length.
V2_FIXED = 16
#: Address block plus TLVs accepted after the fixed part. The addresses take at
#: most 216 bytes (UNIX); load balancers add a few TLVs (an AWS VPC endpoint
#: id, an SSL summary). A longer header is refused rather than buffered.
V2_MAX_PAYLOAD = 1024

_V2_LOCAL = 0x20
_V2_PROXY = 0x21
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0, 1, 2, 3
_STREAM = 1
_V2_ADDRESS_SIZE = {_AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}


class ProxyHeaderError(ValueError):
    """The bytes are not a PROXY header this server accepts; the text says why."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header said. ``source`` is None when it names no client (LOCAL, UNKNOWN)."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    size: int  # bytes the header took on the wire


class ProxyHeaderReader:
    """Collects a connection's first bytes until its PROXY header is whole.

    :meth:`feed` returns None while more bytes are needed, the header and the
    bytes that followed it once it is complete, and raises
    :class:`ProxyHeaderError` as soon as the bytes cannot become a valid
    header (a wrong first byte is refused at once, not after 107 bytes).
    """

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        buffer = self.buffer + data if self.buffer else bytes(data)
        found = parse(buffer)
        if found is None:
            self.buffer = buffer
            return None
        self.buffer = b""
        return found, buffer[found.size :]


def parse(buffer: bytes) -> ProxyHeader | None:
    """The header at the start of ``buffer``, None if incomplete; raises if malformed."""
    if not buffer:
        return None
    if buffer[0] == V1_PREFIX[0]:
        return _parse_v1(buffer)
    if buffer[0] == V2_SIGNATURE[0]:
        return _parse_v2(buffer)
    raise ProxyHeaderError(f"no PROXY header: the connection starts with {buffer[:8]!r}")


def _parse_v1(buffer: bytes) -> ProxyHeader | None:
    head = buffer[: len(V1_PREFIX)]
    if not V1_PREFIX.startswith(head):
        raise ProxyHeaderError(f"no PROXY header: the connection starts with {buffer[:8]!r}")
    end = buffer.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buffer) >= V1_MAX or b"\n" in buffer[:V1_MAX]:
            raise ProxyHeaderError(f"v1 header without CRLF in its first {V1_MAX} bytes")
        return None
    try:
        line = buffer[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 header is not ASCII") from None
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1, None, None, end + 2)
    if len(parts) != 6:
        raise ProxyHeaderError(f"v1 header needs 6 fields, got {len(parts)}: {line!r}")
    _, family, src, dst, sport, dport = parts
    version = {"TCP4": 4, "TCP6": 6}.get(family)
    if version is None:
        raise ProxyHeaderError(f"v1 protocol {family!r} is not TCP4, TCP6 or UNKNOWN")
    return ProxyHeader(
        1,
        (_ip(src, version), _port(sport)),
        (_ip(dst, version), _port(dport)),
        end + 2,
    )


def _ip(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"v1 address {text!r} is not an IP address") from None
    if address.version != version:
        raise ProxyHeaderError(f"v1 address {text!r} is not IPv{version}")
    return str(address)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyHeaderError(f"v1 port {text!r} is not a number 0-65535")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"v1 port {text!r} is above 65535")
    return port


def _parse_v2(buffer: bytes) -> ProxyHeader | None:
    head = buffer[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(head):
        raise ProxyHeaderError(f"no PROXY header: the connection starts with {buffer[:8]!r}")
    if len(buffer) < V2_FIXED:
        return None
    command = buffer[12]
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"v2 version/command byte 0x{command:02x} (expected 0x20 or 0x21)")
    family, transport = buffer[13] >> 4, buffer[13] & 0x0F
    length = int.from_bytes(buffer[14:16], "big")
    if length > V2_MAX_PAYLOAD:
        raise ProxyHeaderError(f"v2 header of {length} bytes (at most {V2_MAX_PAYLOAD})")
    size = V2_FIXED + length
    if len(buffer) < size:
        return None
    if command == _V2_LOCAL:
        return ProxyHeader(2, None, None, size)
    if family > _AF_UNIX or transport > 2:
        raise ProxyHeaderError(f"v2 family/transport byte 0x{buffer[13]:02x} is not defined")
    needed = _V2_ADDRESS_SIZE.get(family, 0)
    if length < needed:
        raise ProxyHeaderError(f"v2 addresses need {needed} bytes, the header has {length}")
    if family in (_AF_UNSPEC, _AF_UNIX):
        return ProxyHeader(2, None, None, size)  # no IP client: keep the proxy's address
    if transport != _STREAM:
        raise ProxyHeaderError("v2 header for a datagram connection on a TCP port")
    body = buffer[V2_FIXED:size]
    if family == _AF_INET:
        src, dst, ports = body[0:4], body[4:8], body[8:12]
    else:
        src, dst, ports = body[0:16], body[16:32], body[32:36]
    return ProxyHeader(
        2,
        (str(ipaddress.ip_address(src)), int.from_bytes(ports[0:2], "big")),
        (str(ipaddress.ip_address(dst)), int.from_bytes(ports[2:4], "big")),
        size,
    )
