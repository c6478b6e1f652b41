"""Declaring messages: the class keywords, keyword-only fields, the catalogue's refusals."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from {{ cookiecutter.package_name }} import (
    messages,
)
from {{ cookiecutter.package_name }}.sgs import (
    Catalog,
    Message,
    default_catalog,
)
from {{ cookiecutter.package_name }}.sgs.message import (
    field_types,
    has_constraints,
)


def test_msg_id_and_reply_keywords_register_the_class() -> None:
    own = Catalog()

    class Pong(Message, msg_id=3001, catalog=own):
        n: int = 0

    class Ping(Message, msg_id=3000, reply=Pong, catalog=own):
        n: int

    assert (Ping.__msg_id__, Ping.__reply__, Pong.__reply__) == (3000, Pong, None)
    assert own.ids() == [3000, 3001] and own[3000] is Ping
    assert 3000 not in default_catalog  # catalog= keeps it out of the default one
    assert isinstance(Ping(n=1), msgspec.Struct)


def test_the_game_catalogue_is_the_default_one() -> None:
    assert messages.catalog is default_catalog
    assert messages.EchoReq.__reply__ is messages.EchoResp
    assert messages.User.__msg_id__ is None and messages.User not in default_catalog


def test_fields_are_keyword_only_and_may_follow_defaults() -> None:
    own = Catalog()

    class Mixed(Message, msg_id=3002, catalog=own):
        note: str = ""
        count: int  # required after a default: fine, every field is keyword-only

    assert Mixed(count=2) == Mixed(note="", count=2)
    with pytest.raises(TypeError):
        Mixed(2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="count"):
        Mixed()  # type: ignore[call-arg]


def test_a_duplicate_id_is_refused_naming_both_classes() -> None:
    own = Catalog()

    class First(Message, msg_id=3003, catalog=own):
        pass

    with pytest.raises(TypeError, match="msg_id 3003 is taken by .*First.*Second"):

        class Second(Message, msg_id=3003, catalog=own):
            pass

    assert own[3003] is First


@pytest.mark.parametrize("msg_id", [-1, 2**32])
def test_an_id_outside_uint32_is_refused(msg_id: int) -> None:
    with pytest.raises(TypeError, match="does not fit in uint32"):

        class Wide(Message, msg_id=msg_id, catalog=Catalog()):
            pass


def test_struct_options_still_reach_msgspec() -> None:
    class Frozen(Message, msg_id=3004, catalog=Catalog(), frozen=True):
        text: str

    with pytest.raises(AttributeError):
        Frozen(text="a").text = "b"  # type: ignore[misc]


def test_constraints_are_seen_through_annotated() -> None:
    class Plain(Message):
        a: int
        b: list[str]

    class Bounded(Message):
        a: Annotated[int, msgspec.Meta(ge=0)]
        b: list[Annotated[str, msgspec.Meta(max_length=3)]]

    class Checked(Message):
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("negative")

    assert field_types(Bounded) == {"a": int, "b": list[Annotated[str, msgspec.Meta(max_length=3)]]}
    assert not has_constraints(Plain)
    assert has_constraints(Bounded) and has_constraints(Checked)
    with pytest.raises(msgspec.ValidationError, match="negative"):
        msgspec.json.decode(b'{"a": -1}', type=Checked)
