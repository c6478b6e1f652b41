"""The codec contract: a message object <-> the value bytes of one TLV frame."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from ..connector import HEADER
from ..errors import DecodeError, UnknownMessageError
from ..message import Catalog, Message

_pack_header = HEADER.pack


class DecoderCache(dict[type[Message], Callable[[bytes], Message]]):
    """One msgspec decoder per type, made by ``make`` on first use: the catalogue's
    types are warmed at start, and a router may route a type from outside the
    catalogue, which gets its decoder on first use."""

    def __init__(
        self, make: Callable[[type[Message]], Callable[[bytes], Message]], catalog: Catalog
    ) -> None:
        super().__init__()
        self._make = make
        for cls in catalog:
            self[cls] = make(cls)

    def __missing__(self, cls: type[Message]) -> Callable[[bytes], Message]:
        decode = self[cls] = self._make(cls)
        return decode


class Codec(abc.ABC):
    """Encodes and decodes the messages of one catalogue.

    Subclasses implement :meth:`encode_value` and :meth:`decode_value`, and may
    offer faster :meth:`encode_frame` / :meth:`fast_decoder` for the hot path;
    the typed errors live here so every codec reports an unknown id or an
    undecodable value the same way.
    """

    name = "abstract"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._by_id = {cls.__msg_id__: cls for cls in catalog}

    @abc.abstractmethod
    def encode_value(self, msg: Message) -> bytes:
        """The value bytes of ``msg``."""

    @abc.abstractmethod
    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        """``cls`` from value bytes; may raise anything on bad input."""

    def fast_decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        """A callable for the hot path; it may raise anything on bad input.

        Callers fall back to :meth:`decode` on failure, which handles the edge
        cases (empty values) and turns errors into :class:`DecodeError`.
        """
        return lambda data: self.decode_value(cls, data)

    def frame_encoder(self, cls: type[Message] | None) -> Callable[[Message], bytes]:
        """An ``encode_frame`` for the hot path, chosen once per route for its reply type.

        It must encode a message of any type (a handler may answer with
        another type than the declared reply); codecs that can do better for
        ``cls`` return a callable that checks the type first.
        """
        return self.encode_frame

    def encode_frame(self, msg: Message) -> bytes:
        """Header and value as one bytes object, ready for ``transport.write``."""
        value = self.encode_value(msg)
        return _pack_header(msg.__msg_id__, len(value)) + value

    def decode(self, msg_id: int, data: bytes) -> Message:
        """The message under ``msg_id``; typed errors name the id and the codec."""
        cls = self._by_id.get(msg_id)
        if cls is None:
            raise UnknownMessageError(msg_id, self.name)
        try:
            return self.decode_value(cls, data)
        except Exception as exc:  # every codec library raises its own types
            raise DecodeError(msg_id, self.name, _reason(exc)) from exc

    def encode(self, msg: Message) -> bytes:
        """The value bytes alone (for tools and tests)."""
        return self.encode_value(msg)


def typed_frame_encoder(
    cls: type[Message],
    encode_value: Callable[[Any], bytes],
    fallback: Callable[[Message], bytes],
) -> Callable[[Message], bytes]:
    """``encode_frame`` for replies of type ``cls``, any other type through ``fallback``.

    The id is a constant and the value encoder is called directly: no lookup
    of the type in the codec's tables, about 400 instructions a reply.
    """
    msg_id = cls.__msg_id__
    pack = _pack_header

    def encode_frame(msg: Message) -> bytes:
        if type(msg) is not cls:
            return fallback(msg)
        value = encode_value(msg)
        return pack(msg_id, len(value)) + value

    return encode_frame


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    first: Any = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {first}"
