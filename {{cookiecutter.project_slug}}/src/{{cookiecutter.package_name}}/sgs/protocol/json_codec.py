"""JSON through pydantic-core: encoding and validation both run in Rust."""

from __future__ import annotations

from collections.abc import Callable

from ..connector import HEADER
from ..message import Message
from .base import Codec

_pack_header = HEADER.pack


class JsonCodec(Codec):
    name = "json"

    def fast_decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        return cls.__pydantic_validator__.validate_json

    def encode_frame(self, msg: Message) -> bytes:
        value = msg.__pydantic_serializer__.to_json(msg)
        return _pack_header(msg.__msg_id__, len(value)) + value

    def encode_value(self, msg: Message) -> bytes:
        return msg.__pydantic_serializer__.to_json(msg)

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        # go-sgs peers send an empty value for field-less messages.
        return cls.__pydantic_validator__.validate_json(data or b"{}")
