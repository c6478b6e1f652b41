"""MessagePack via the ``msgpack`` library; the map keys are the field names."""

from __future__ import annotations

from collections.abc import Callable

import msgpack

from ..message import Catalog, Message
from .base import Codec, is_plain


class MsgpackCodec(Codec):
    name = "msgpack"

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self._packb = msgpack.Packer(use_bin_type=True).pack
        self._plain = {cls for cls in catalog if is_plain(cls)}

    def encode_value(self, msg: Message) -> bytes:
        if type(msg) in self._plain:
            return self._packb(msg.__dict__)
        return self._packb(msg.__pydantic_serializer__.to_python(msg))

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        if not data:
            return cls.__pydantic_validator__.validate_python({})
        return cls.__pydantic_validator__.validate_python(msgpack.unpackb(data))

    def fast_decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        validate = cls.__pydantic_validator__.validate_python
        unpackb = msgpack.unpackb
        return lambda data: validate(unpackb(data))
