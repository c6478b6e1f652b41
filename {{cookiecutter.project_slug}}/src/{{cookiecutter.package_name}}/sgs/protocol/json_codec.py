"""JSON through pydantic-core: encoding and validation both run in Rust."""

from __future__ import annotations

from ..message import Message
from .base import Codec


class JsonCodec(Codec):
    name = "json"

    def encode_value(self, msg: Message) -> bytes:
        return msg.__pydantic_serializer__.to_json(msg)

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        # go-sgs peers send an empty value for field-less messages.
        return cls.__pydantic_validator__.validate_json(data or b"{}")
