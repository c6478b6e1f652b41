"""BSON via pymongo's ``bson`` module (not the unrelated PyPI package ``bson``)."""

from __future__ import annotations

from collections.abc import Callable

import bson

from ..message import Catalog, Message
from .base import Codec, is_plain

if not hasattr(bson, "encode"):  # pragma: no cover - wrong distribution installed
    raise ImportError("the 'bson' module must come from pymongo; uninstall the 'bson' package")


class BsonCodec(Codec):
    name = "bson"

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self._plain = {cls for cls in catalog if is_plain(cls)}

    def encode_value(self, msg: Message) -> bytes:
        if type(msg) in self._plain:
            return bson.encode(msg.__dict__)
        return bson.encode(msg.__pydantic_serializer__.to_python(msg))

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        if not data:
            return cls.__pydantic_validator__.validate_python({})
        return cls.__pydantic_validator__.validate_python(bson.decode(data))

    def fast_decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        validate = cls.__pydantic_validator__.validate_python
        decode = bson.decode
        return lambda data: validate(decode(data))
