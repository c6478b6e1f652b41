"""Message declarations and the catalogue that maps wire ids to them.

A message is declared once, as a msgspec Struct with a numeric id; every codec
works from that one declaration, so switching the ``protocol`` setting needs
no change to handlers or messages.

Why msgspec here and pydantic for the settings: a message is decoded,
validated, built and encoded for every request, so its cost is paid per
message. msgspec does that work in a fraction of pydantic's instructions
(about 4.9k against 16.3k for an echo) while still checking every inbound
value against the declared types and ``msgspec.Meta`` constraints. Settings
are read once before start, where pydantic-settings' environment parsing and
error messages are worth more than speed.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Iterator
from typing import Any, ClassVar

import msgspec

MAX_MSG_ID = 0xFFFFFFFF


class MessageMeta(msgspec.StructMeta):
    """Reads the wire keywords ``msg_id=``, ``reply=`` and ``catalog=`` of a declaration.

    Every field is keyword-only, so ``EchoResp(text=...)`` reads as it did and
    a required field may follow one with a default.
    """

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        msg_id: int | None = None,
        reply: type[Message] | None = None,
        catalog: Catalog | None = None,
        **kwargs: Any,
    ) -> MessageMeta:
        kwargs.setdefault("kw_only", True)
        cls = super().__new__(mcls, name, bases, namespace, **kwargs)
        cls.__msg_id__ = msg_id  # type: ignore[attr-defined]
        cls.__reply__ = reply  # type: ignore[attr-defined]
        if msg_id is not None:
            (catalog if catalog is not None else default_catalog).add(cls)  # type: ignore[arg-type]
        return cls


class Message(msgspec.Struct, metaclass=MessageMeta):
    """Base of every message that travels in a TLV frame.

    ``class EchoReq(Message, msg_id=9, reply=EchoResp)`` registers the class in
    :data:`default_catalog` under id 9 and tells clients which message answers
    it. A subclass without ``msg_id`` is a plain nested message or an abstract
    base; it never travels alone. Unknown fields in inbound values are
    ignored; bytes travel as base64 in JSON.
    """

    __msg_id__: ClassVar[int | None] = None
    __reply__: ClassVar[type[Message] | None] = None


def field_types(cls: type[Any]) -> dict[str, Any]:
    """Field name -> declared type, in wire order; a top-level ``Annotated`` is stripped
    (``list[Annotated[str, ...]]`` keeps its inner one)."""
    return {f.name: _strip_annotated(f.type) for f in msgspec.structs.fields(cls)}


def has_constraints(cls: type[Any]) -> bool:
    """True when a field carries ``msgspec.Meta``, is a ``Literal`` or an enum, or the
    class checks in ``__post_init__``.

    Values a protobuf parser typed already can go straight into such a class
    only through :func:`msgspec.convert`, which enforces all of them (a string
    is not yet one of a Literal's values).
    """
    if getattr(cls, "__post_init__", None) is not None:
        return True
    return any(_annotated(f.type) for f in msgspec.structs.fields(cls))


def _annotated(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Annotated, typing.Literal):
        return True
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return True
    return any(_annotated(arg) for arg in typing.get_args(tp) if not isinstance(arg, str))


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


class Catalog:
    """The id <-> class table a codec and a router work from.

    Duplicate ids are a declaration bug, so they fail at import time with both
    class names rather than silently shadowing one another on the wire.
    """

    def __init__(self, messages: list[type[Message]] | None = None) -> None:
        self._by_id: dict[int, type[Message]] = {}
        for cls in messages or ():
            self.add(cls)

    def add(self, cls: type[Message]) -> type[Message]:
        msg_id = cls.__msg_id__
        if msg_id is None:
            raise TypeError(f"{cls.__qualname__} has no msg_id")
        if not 0 <= msg_id <= MAX_MSG_ID:
            raise TypeError(f"{cls.__qualname__}: msg_id {msg_id} does not fit in uint32")
        known = self._by_id.get(msg_id)
        if known is not None and known is not cls:
            if (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
                raise TypeError(
                    f"msg_id {msg_id} is taken by {known.__qualname__}; "
                    f"cannot register {cls.__qualname__}"
                )
        self._by_id[msg_id] = cls  # re-import of the same module replaces its class
        return cls

    def get(self, msg_id: int) -> type[Message] | None:
        return self._by_id.get(msg_id)

    def __getitem__(self, msg_id: int) -> type[Message]:
        return self._by_id[msg_id]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, int):
            return item in self._by_id
        return any(cls is item for cls in self._by_id.values())

    def __iter__(self) -> Iterator[type[Message]]:
        return iter(sorted(self._by_id.values(), key=lambda c: c.__msg_id__ or 0))

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> list[int]:
        return sorted(self._by_id)

    def merged(self, other: Catalog) -> Catalog:
        """A new catalogue with both tables (duplicate ids still refused)."""
        out = Catalog(list(self))
        for cls in other:
            out.add(cls)
        return out


default_catalog = Catalog()
