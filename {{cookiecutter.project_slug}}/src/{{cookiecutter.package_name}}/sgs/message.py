"""Message declarations and the catalogue that maps wire ids to them.

A message is declared once, as a pydantic model with a numeric id; every codec
works from that one declaration, so switching the ``protocol`` setting needs
no change to handlers or messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

MAX_MSG_ID = 0xFFFFFFFF


class Message(BaseModel):
    """Base of every message that travels in a TLV frame.

    ``class EchoReq(Message, msg_id=9, reply=EchoResp)`` registers the class in
    :data:`default_catalog` under id 9 and tells clients which message answers
    it. A subclass without ``msg_id`` is a plain nested model or an abstract
    base; it never travels alone.
    """

    # bytes travel as base64 in JSON, as in the protobuf JSON mapping.
    model_config = ConfigDict(extra="ignore", ser_json_bytes="base64", val_json_bytes="base64")

    __msg_id__: ClassVar[int | None] = None
    __reply__: ClassVar[type[Message] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The wire keywords are consumed by __pydantic_init_subclass__, which runs
        # once pydantic has finished building the class.
        for key in ("msg_id", "reply", "catalog"):
            kwargs.pop(key, None)
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(
        cls,
        msg_id: int | None = None,
        reply: type[Message] | None = None,
        catalog: Catalog | None = None,
        **kwargs: Any,
    ) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.__msg_id__ = msg_id
        cls.__reply__ = reply
        if msg_id is not None:
            (catalog if catalog is not None else default_catalog).add(cls)


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
