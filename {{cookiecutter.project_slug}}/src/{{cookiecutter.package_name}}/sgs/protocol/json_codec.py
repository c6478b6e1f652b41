"""JSON through msgspec: decoding, validation and encoding all run in C.

Bytes fields are the one place where msgspec's own JSON differs from the
bytes deployed clients already speak: the wire has always carried them as
url-safe base64 (pydantic's spelling), msgspec writes the standard alphabet.
Messages with a bytes field anywhere take a slower path that writes the
url-safe alphabet and reads either; every other message goes straight
through msgspec.
"""

from __future__ import annotations

import base64
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from ..connector import HEADER
from ..message import Catalog, Message, field_types
from .base import Codec, DecoderCache, typed_frame_encoder

_pack_header = HEADER.pack
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_BINARY = (bytes, bytearray, memoryview)


class JsonCodec(Codec):
    name = "json"

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self._encode = msgspec.json.Encoder().encode
        self._decoders = DecoderCache(
            lambda cls: msgspec.json.Decoder(cls, strict=False).decode, catalog
        )
        # Types without a bytes field anywhere: msgspec's own bytes are the wire's.
        self._plain = {cls for cls in catalog if not _holds_bytes(cls, set())}

    def _is_plain(self, cls: type[Message]) -> bool:
        if cls in self._plain:
            return True
        if _holds_bytes(cls, set()):
            return False
        self._plain.add(cls)  # a type from outside the catalogue, checked once
        return True

    def fast_decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        if not self._is_plain(cls):
            return super().fast_decoder(cls)
        return self._decoders[cls]

    def frame_encoder(self, cls: type[Message] | None) -> Callable[[Message], bytes]:
        if cls is None or cls.__msg_id__ is None or not self._is_plain(cls):
            return self.encode_frame
        return typed_frame_encoder(cls, self._encode, self.encode_frame)

    def encode_frame(self, msg: Message) -> bytes:
        if type(msg) in self._plain:
            value = self._encode(msg)
        else:
            value = self.encode_value(msg)
        return _pack_header(msg.__msg_id__, len(value)) + value

    def encode_value(self, msg: Message) -> bytes:
        if self._is_plain(type(msg)):
            return self._encode(msg)
        return _encode_urlsafe(msg)

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        # go-sgs peers send an empty value for field-less messages.
        data = data or b"{}"
        if not self._is_plain(cls):
            data = _standard_base64(cls, msgspec.json.decode(data))
            return msgspec.convert(data, cls, strict=False)
        return self._decoders[cls](data)


def _holds_bytes(tp: Any, seen: set[Any]) -> bool:
    """True when ``tp`` has a bytes field anywhere, nested messages and lists included."""
    if tp in _BINARY:
        return True
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if tp in seen:
            return False
        seen.add(tp)
        return any(_holds_bytes(t, seen) for t in field_types(tp).values())
    return any(_holds_bytes(arg, seen) for arg in typing.get_args(tp))


def _encode_urlsafe(msg: Message) -> bytes:
    return msgspec.json.encode(_urlsafe(msgspec.to_builtins(msg, builtin_types=_BINARY)))


def _urlsafe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _urlsafe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_urlsafe(v) for v in value]
    if isinstance(value, _BINARY):
        return base64.urlsafe_b64encode(value).decode()
    return value


def _standard_base64(tp: Any, value: Any) -> Any:
    """``value`` (decoded JSON of type ``tp``) with its bytes fields in the standard alphabet.

    Only what the type says is bytes is touched; anything of the wrong shape
    is left for :func:`msgspec.convert` to refuse.
    """
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if tp in _BINARY:
        return value.translate(_URLSAFE_TO_STANDARD) if isinstance(value, str) else value
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if not isinstance(value, dict):
            return value
        fields = field_types(tp)
        return {k: _standard_base64(fields[k], v) if k in fields else v for k, v in value.items()}
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None) and _holds_bytes(arg, set()):
                return _standard_base64(arg, value) if value is not None else value
        return value
    if origin in (list, tuple, set, frozenset) and isinstance(value, list):
        (item, *_) = typing.get_args(tp) or (Any,)
        return [_standard_base64(item, v) for v in value]
    return value
