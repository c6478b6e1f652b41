"""MessagePack via the ``msgpack`` library; the map keys are the field names."""

from __future__ import annotations

import msgpack

from ..message import Message
from .base import Codec


class MsgpackCodec(Codec):
    name = "msgpack"

    def __init__(self, catalog) -> None:  # type: ignore[no-untyped-def]
        super().__init__(catalog)
        self._packb = msgpack.Packer(use_bin_type=True).pack

    def encode_value(self, msg: Message) -> bytes:
        return self._packb(msg.__pydantic_serializer__.to_python(msg))

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        if not data:
            return cls.__pydantic_validator__.validate_python({})
        return cls.__pydantic_validator__.validate_python(msgpack.unpackb(data, raw=False))
