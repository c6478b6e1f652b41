"""The PROXY header parser on its own: a table of good and bad headers, and hypothesis.

No sockets: the parser is I/O-free, so partial headers (split at every
byte), length bounds and every malformed shape are checked directly.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from {{ cookiecutter.package_name }}.sgs.proxy import (
    ProxyHeaderError,
    ProxyHeaderReader,
)
from {{ cookiecutter.package_name }}.sgs.proxy.header import (
    V1_MAX,
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
)


def v2(
    command: int = 0x21,
    family: int = 0x11,
    body: bytes = b"",
    length: int | None = None,
) -> bytes:
    size = len(body) if length is None else length
    return V2_SIGNATURE + bytes([command, family]) + struct.pack(">H", size) + body


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack(">HH", sport, dport)
    )


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack(">HH", sport, dport)
    )


GOOD = [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 6666\r\n", ("203.0.113.7", 51000), 1),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 443 6666\r\n", ("2001:db8::7", 443), 1),
    (b"PROXY UNKNOWN\r\n", None, 1),
    (b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", None, 1),
    (v2(body=inet4("198.51.100.4", "10.0.0.1", 40000, 6666)), ("198.51.100.4", 40000), 2),
    (v2(family=0x21, body=inet6("2001:db8::4", "::1", 1, 2)), ("2001:db8::4", 1), 2),
    # TLVs after the addresses (an AWS VPC endpoint id) are skipped.
    (
        v2(body=inet4("192.0.2.1", "10.0.0.1", 5, 6) + b"\xea\x00\x05vpce1"),
        ("192.0.2.1", 5),
        2,
    ),
    (v2(command=0x20, family=0x00), None, 2),  # LOCAL: the proxy's own health check
    (v2(command=0x20, family=0x11, body=b"junk addresses ignored"), None, 2),
    (v2(family=0x00), None, 2),  # PROXY, AF_UNSPEC: no client named
    (v2(family=0x31, body=bytes(216)), None, 2),  # AF_UNIX: no IP client
]

BAD = [
    (b"GET / HTTP/1.1\r\n", "no PROXY header"),
    (b"\x00\x00\x03\xe9\x00\x00\x00\x02{}", "no PROXY header"),
    (b"PROXI TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "6 fields"),
    (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "not TCP4"),
    (b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "not IPv4"),
    (b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", "not IPv6"),
    (b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", "not an IP"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "above 65535"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "not a number"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "not a number"),
    (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "6 fields"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "without CRLF"),
    (b"PROXY " + b"A" * V1_MAX, "without CRLF"),
    (b"PROXY TCP4 \xff.2.3.4 5.6.7.8 1 2\r\n", "not ASCII"),
    (V2_SIGNATURE[:5] + b"X", "no PROXY header"),
    (v2(command=0x11), "version/command"),
    (v2(command=0x22), "version/command"),
    (v2(family=0x41, body=bytes(12)), "not defined"),
    (v2(family=0x13, body=bytes(12)), "not defined"),
    (v2(family=0x12, body=inet4("1.2.3.4", "5.6.7.8", 1, 2)), "datagram"),
    (v2(body=bytes(11)), "need 12 bytes"),
    (v2(family=0x21, body=bytes(35)), "need 36 bytes"),
    (v2(length=V2_MAX_PAYLOAD + 1), f"at most {V2_MAX_PAYLOAD}"),
]


@pytest.mark.parametrize(("wire", "source", "version"), GOOD)
def test_good_headers_name_the_client_and_keep_the_bytes_after(
    wire: bytes, source: tuple[str, int] | None, version: int
) -> None:
    after = b"\x00\x00\x03\xe9\x00\x00\x00\x02{}"
    found = ProxyHeaderReader().feed(wire + after)
    assert found is not None
    header, rest = found
    assert (header.source, header.version, header.size, rest) == (source, version, len(wire), after)


@pytest.mark.parametrize(("wire", "source", "version"), GOOD)
def test_a_header_split_at_every_byte_is_read_whole(
    wire: bytes, source: tuple[str, int] | None, version: int
) -> None:
    for cut in range(1, len(wire)):
        reader = ProxyHeaderReader()
        assert reader.feed(wire[:cut]) is None, f"complete after {cut} of {len(wire)} bytes"
        found = reader.feed(wire[cut:] + b"x")
        assert found is not None
        assert found[0].source == source
        assert found[1] == b"x"


@pytest.mark.parametrize(("wire", "why"), BAD)
def test_malformed_headers_are_refused_with_the_reason(wire: bytes, why: str) -> None:
    with pytest.raises(ProxyHeaderError, match=why):
        ProxyHeaderReader().feed(wire)


def test_a_wrong_first_byte_is_refused_at_once() -> None:
    with pytest.raises(ProxyHeaderError):
        ProxyHeaderReader().feed(b"G")
    with pytest.raises(ProxyHeaderError):
        ProxyHeaderReader().feed(b"\r\n\r\n\x01")


def test_an_oversized_v2_length_is_refused_from_the_fixed_part_alone() -> None:
    # The 16 bytes announcing more than V2_MAX_PAYLOAD are enough: nothing is buffered.
    with pytest.raises(ProxyHeaderError):
        ProxyHeaderReader().feed(v2(length=0xFFFF))


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)


@given(
    st.one_of(
        st.tuples(st.just("TCP4"), ipv4, ipv4, ports, ports),
        st.tuples(st.just("TCP6"), ipv6, ipv6, ports, ports),
    ),
    st.binary(max_size=64),
    st.lists(st.integers(1, 40), max_size=10),
)
def test_any_v1_header_in_any_pieces_gives_its_source(
    fields: tuple[str, str, str, int, int], after: bytes, cuts: list[int]
) -> None:
    family, src, dst, sport, dport = fields
    wire = f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()
    assert len(wire) <= V1_MAX
    data = wire + after
    reader = ProxyHeaderReader()
    found = None
    pos = 0
    for cut in [*cuts, len(data)]:
        piece, pos = data[pos : pos + cut], pos + cut
        found = reader.feed(piece)
        if found is not None or pos >= len(data):
            break
    if found is None:
        found = reader.feed(data[pos:])
    assert found is not None
    header, rest = found
    assert header.source == (str(ipaddress.ip_address(src)), sport)
    assert rest + data[pos:] == data[len(wire) :]  # bytes not yet fed follow the rest


@given(
    st.one_of(
        st.tuples(st.just(0x11), ipv4, ipv4, ports, ports),
        st.tuples(st.just(0x21), ipv6, ipv6, ports, ports),
    ),
    st.binary(max_size=200),
)
def test_any_v2_header_with_tlvs_gives_its_source(
    fields: tuple[int, str, str, int, int], tlvs: bytes
) -> None:
    family, src, dst, sport, dport = fields
    pack = inet4 if family == 0x11 else inet6
    wire = v2(family=family, body=pack(src, dst, sport, dport) + tlvs)
    found = ProxyHeaderReader().feed(wire + b"tail")
    assert found is not None
    assert found[0].source == (src, sport)
    assert found[1] == b"tail"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_reader(data: bytes) -> None:
    """Any input either waits for more, parses, or raises ProxyHeaderError: nothing else."""
    reader = ProxyHeaderReader()
    try:
        found = reader.feed(data)
    except ProxyHeaderError:
        return
    if found is None:
        assert len(data) < V1_MAX + 16 + V2_MAX_PAYLOAD
    else:
        assert found[0].size <= len(data)
