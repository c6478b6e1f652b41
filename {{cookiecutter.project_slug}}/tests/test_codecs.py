"""Every codec round-trips every message of the catalogue; errors are typed."""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fwkit

from {{ cookiecutter.package_name }} import (
    messages,
)
from {{ cookiecutter.package_name }}.sgs import (
    DecodeError,
    UnknownMessageError,
    get_codec,
)
from {{ cookiecutter.package_name }}.sgs.message import (
    field_types,
)

INT64 = st.integers(-(2**63), 2**63 - 1)


def strategy_for(annotation: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return st.none() | strategy_for(args[0])
    if origin is list:
        return st.lists(strategy_for(typing.get_args(annotation)[0]), max_size=4)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return model_strategy(annotation)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        bool: st.booleans(),
        int: INT64,
        float: st.floats(allow_nan=False, allow_infinity=False),
        str: st.text(max_size=20),
        bytes: st.binary(max_size=20),
    }
    return simple[annotation]


def model_strategy(model: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    fields = {name: strategy_for(tp) for name, tp in field_types(model).items()}
    return st.fixed_dictionaries(fields).map(lambda d: model(**d))


CATALOGUES = {"game": messages.catalog, "framework-tests": fwkit.catalog}
CASES = [
    (proto, name, cls)
    for proto in fwkit.PROTOCOLS
    for name, cat in CATALOGUES.items()
    for cls in cat
]


@pytest.mark.parametrize(
    ("protocol", "catalogue", "cls"), CASES, ids=[f"{p}-{n}-{c.__name__}" for p, n, c in CASES]
)
def test_round_trip(protocol: str, catalogue: str, cls: type[Any]) -> None:
    codec = get_codec(protocol, CATALOGUES[catalogue])

    @settings(max_examples=25, deadline=None)
    @given(msg=model_strategy(cls))
    def check(msg: Any) -> None:
        frame = codec.encode_frame(msg)
        assert int.from_bytes(frame[:4], "big") == cls.__msg_id__
        assert int.from_bytes(frame[4:8], "big") == len(frame) - 8
        assert codec.decode(cls.__msg_id__, frame[8:]) == msg

    check()


@pytest.mark.parametrize("protocol", fwkit.PROTOCOLS)
def test_unknown_id_names_id_and_codec(protocol: str) -> None:
    codec = get_codec(protocol, fwkit.catalog)
    with pytest.raises(UnknownMessageError) as err:
        codec.decode(4242, b"")
    assert err.value.msg_id == 4242 and err.value.codec == protocol
    assert "4242" in str(err.value) and protocol in str(err.value)


@pytest.mark.parametrize("protocol", fwkit.PROTOCOLS)
def test_undecodable_value_names_id_and_codec(protocol: str) -> None:
    codec = get_codec(protocol, fwkit.catalog)
    with pytest.raises(DecodeError) as err:
        codec.decode(fwkit.EchoReq.__msg_id__, b"\xff\xfe\x00garbage\x01")
    assert err.value.msg_id == fwkit.EchoReq.__msg_id__ and err.value.codec == protocol
    assert protocol in str(err.value)


@pytest.mark.parametrize("protocol", fwkit.PROTOCOLS)
def test_empty_value_decodes_field_less_message(protocol: str) -> None:
    codec = get_codec(protocol, fwkit.catalog)
    assert codec.decode(fwkit.BoomReq.__msg_id__, b"") == fwkit.BoomReq()


def test_unknown_protocol_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown protocol 'xml'"):
        get_codec("xml", fwkit.catalog)
