"""BSON via pymongo's ``bson`` module (not the unrelated PyPI package ``bson``)."""

from __future__ import annotations

import bson

from ..message import Message
from .base import Codec

if not hasattr(bson, "encode"):  # pragma: no cover - wrong distribution installed
    raise ImportError("the 'bson' module must come from pymongo; uninstall the 'bson' package")


class BsonCodec(Codec):
    name = "bson"

    def encode_value(self, msg: Message) -> bytes:
        return bson.encode(msg.__pydantic_serializer__.to_python(msg))

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        if not data:
            return cls.__pydantic_validator__.validate_python({})
        return cls.__pydantic_validator__.validate_python(bson.decode(data))
