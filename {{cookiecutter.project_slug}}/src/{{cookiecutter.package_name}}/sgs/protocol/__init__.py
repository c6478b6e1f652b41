"""Codecs, chosen by the ``protocol`` setting rather than by code edits."""

from __future__ import annotations

from ..message import Catalog, default_catalog
from .base import Codec
from .bson_codec import BsonCodec
from .json_codec import JsonCodec
from .msgpack_codec import MsgpackCodec
from .protobuf_codec import ProtobufCodec, render_proto

PROTOCOLS: dict[str, type[Codec]] = {
    "json": JsonCodec,
    "protobuf": ProtobufCodec,
    "msgpack": MsgpackCodec,
    "bson": BsonCodec,
}


def get_codec(name: str, catalog: Catalog | None = None) -> Codec:
    """The codec called ``name`` for ``catalog`` (the default catalogue if omitted)."""
    try:
        codec_cls = PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}") from None
    return codec_cls(catalog if catalog is not None else default_catalog)


__all__ = ["PROTOCOLS", "Codec", "get_codec", "render_proto"]
