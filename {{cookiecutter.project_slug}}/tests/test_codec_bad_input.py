"""The bad-input table, per codec: what is refused, with which error, and what is let through.

Each row is one class of bad value a client can send: wrong types, missing
fields, out-of-range values (``msgspec.Meta``), a failed ``__post_init__``
check, a value that is not a map, unknown fields (ignored), and the empty
value go-sgs sends for a field-less message. A refusal is a ``DecodeError``
naming the id and the codec, which the server answers as ``Error`` with code
``decode_error``; the router's fast decoder must agree with the full path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import bson
import msgpack
import msgspec
import pytest

from {{ cookiecutter.package_name }}.sgs import (
    Catalog,
    DecodeError,
    Message,
    get_codec,
)

catalog = Catalog()


class Score(Message, msg_id=2001, catalog=catalog):
    player: str
    points: Annotated[int, msgspec.Meta(ge=0, le=100)]
    tags: list[Annotated[str, msgspec.Meta(max_length=8)]] = []

    def __post_init__(self) -> None:
        if self.player == "nobody":
            raise ValueError("player 'nobody' is reserved")


class Quit(Message, msg_id=2002, catalog=catalog):
    pass


OK = Score(player="ann", points=7)
REFUSED = None  # expected outcome of a row the codec must refuse

#: label -> (document, expected message or REFUSED), for the map-based codecs.
DOCUMENT_ROWS: dict[str, tuple[Any, Any]] = {
    "valid": ({"player": "ann", "points": 7}, OK),
    "unknown field ignored": ({"player": "ann", "points": 7, "extra": [1, 2]}, OK),
    "numeric string coerced": ({"player": "ann", "points": "7"}, OK),
    "integral float coerced": ({"player": "ann", "points": 7.0}, OK),
    "wrong type: int for str": ({"player": 5, "points": 7}, REFUSED),
    "wrong type: text for int": ({"player": "ann", "points": "seven"}, REFUSED),
    "wrong type: fraction for int": ({"player": "ann", "points": 7.5}, REFUSED),
    "wrong type: str for list": ({"player": "ann", "points": 7, "tags": "a"}, REFUSED),
    "wrong item type in list": ({"player": "ann", "points": 7, "tags": ["a", 1]}, REFUSED),
    "list item too long": ({"player": "ann", "points": 7, "tags": ["a" * 9]}, REFUSED),
    "missing field": ({"player": "ann"}, REFUSED),
    "null for a required field": ({"player": None, "points": 7}, REFUSED),
    "above maximum": ({"player": "ann", "points": 101}, REFUSED),
    "below minimum": ({"player": "ann", "points": -1}, REFUSED),
    "__post_init__ check": ({"player": "nobody", "points": 7}, REFUSED),
}

WRITERS: dict[str, Callable[[Any], bytes]] = {
    "json": lambda doc: json.dumps(doc).encode(),
    "msgpack": lambda doc: msgpack.packb(doc, use_bin_type=True),
    "bson": bson.encode,
}

#: Values that are not a map of fields at all, per map-based codec.
NOT_A_MAP: dict[str, list[bytes]] = {
    "json": [b"[1, 2]", b'"text"', b"null", b"{", b'{"player": "ann", "points": 7} trailing'],
    "msgpack": [msgpack.packb([1, 2]), msgpack.packb("text"), b"\xc1", b"\x82\xa6player"],
    "bson": [b"\x05\x00\x00", b"\x10\x00\x00\x00\x00", b"\xff\xfe\x00garbage\x01"],
}

ROWS = [
    (protocol, label, WRITERS[protocol](doc), expected)
    for protocol in WRITERS
    for label, (doc, expected) in DOCUMENT_ROWS.items()
] + [
    (p, f"not a map {i}", raw, REFUSED)
    for p, values in NOT_A_MAP.items()
    for i, raw in enumerate(values)
]


def _pb(**fields: Any) -> bytes:
    schema = get_codec("protobuf", catalog).schema  # type: ignore[attr-defined]
    return schema.classes[Score](**fields).SerializeToString()


#: protobuf carries types in the schema, so a wrong type is a wire-type clash
#: or a truncated value; a field left out is the proto3 default, as before.
PROTOBUF_ROWS: list[tuple[str, bytes, Any]] = [
    ("valid", _pb(player="ann", points=7), OK),
    ("unknown field ignored", _pb(player="ann", points=7) + b"\x48\x01", OK),
    ("missing field is the default", _pb(player="ann"), Score(player="ann", points=0)),
    ("above maximum", _pb(player="ann", points=101), REFUSED),
    ("below minimum", _pb(player="ann", points=-1), REFUSED),
    ("__post_init__ check", _pb(player="nobody", points=7), REFUSED),
    ("list item too long", _pb(player="ann", points=7, tags=["a" * 9]), REFUSED),
    (
        "list items",
        _pb(player="ann", points=7, tags=["x", "y"]),
        Score(player="ann", points=7, tags=["x", "y"]),
    ),
    ("truncated varint", b"\x10\xff", REFUSED),
    ("length past the end", b"\x0a\x09ann", REFUSED),
    ("invalid utf-8 in a string", b"\x0a\x02\xff\xfe", REFUSED),
    ("garbage", b"\xff\xfe\x00garbage\x01", REFUSED),
]
ROWS += [("protobuf", label, raw, expected) for label, raw, expected in PROTOBUF_ROWS]


@pytest.mark.parametrize(
    ("protocol", "label", "value", "expected"), ROWS, ids=[f"{p}-{lb}" for p, lb, _, _ in ROWS]
)
def test_bad_input_row(protocol: str, label: str, value: bytes, expected: Any) -> None:
    codec = get_codec(protocol, catalog)
    fast = codec.fast_decoder(Score)
    if expected is REFUSED:
        with pytest.raises(DecodeError) as err:
            codec.decode(Score.__msg_id__, value)  # type: ignore[arg-type]
        assert err.value.code == "decode_error"
        assert err.value.msg_id == Score.__msg_id__ and err.value.codec == protocol
        with pytest.raises(Exception):  # noqa: B017 - each library raises its own type
            fast(value)
    else:
        assert codec.decode(Score.__msg_id__, value) == expected  # type: ignore[arg-type]
        assert fast(value) == expected


@pytest.mark.parametrize("protocol", [*WRITERS, "protobuf"])
def test_empty_value(protocol: str) -> None:
    codec = get_codec(protocol, catalog)
    assert codec.decode(Quit.__msg_id__, b"") == Quit()  # type: ignore[arg-type]
    if protocol == "protobuf":  # empty protobuf is every field at its default
        assert codec.decode(Score.__msg_id__, b"") == Score(player="", points=0)  # type: ignore[arg-type]
    else:
        with pytest.raises(DecodeError):
            codec.decode(Score.__msg_id__, b"")  # type: ignore[arg-type]
