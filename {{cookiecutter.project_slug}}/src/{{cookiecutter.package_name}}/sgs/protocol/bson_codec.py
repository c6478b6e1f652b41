"""BSON via pymongo's ``bson`` module (not the unrelated PyPI package ``bson``).

msgspec has no BSON format of its own: a message becomes a dict of builtins
(bytes kept as bytes, so they travel as BSON binary) for ``bson.encode``, and
a decoded document becomes a message through :func:`msgspec.convert`, which
validates it like the other codecs' decoders do.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import bson
import msgspec

from ..message import Message
from .base import Codec

if not hasattr(bson, "encode"):  # pragma: no cover - wrong distribution installed
    raise ImportError("the 'bson' module must come from pymongo; uninstall the 'bson' package")

_to_document = partial(msgspec.to_builtins, builtin_types=(bytes, bytearray, memoryview))


class BsonCodec(Codec):
    name = "bson"

    def encode_value(self, msg: Message) -> bytes:
        return bson.encode(_to_document(msg))

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        if not data:  # go-sgs peers send an empty value for field-less messages
            return msgspec.convert({}, cls)
        return msgspec.convert(bson.decode(data), cls, strict=False)

    def fast_decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        convert = msgspec.convert
        decode = bson.decode
        return lambda data: convert(decode(data), cls, strict=False)
