"""The message catalogue as one JSON Schema document, for client developers.

``<slug> json-schema`` writes it (as ``proto`` writes the ``.proto``): what a
client in any language may send and will receive under the ``json`` protocol,
each message's wire id and reply included, so a client team can generate
types or validate its own frames without reading Python.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from .message import Catalog

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def catalog_schema(catalog: Catalog, title: str = "sgs") -> dict[str, Any]:
    """One schema: ``$defs`` holds every message (``x-msg-id``, ``x-reply``) and nested type."""
    messages = list(catalog)
    _, defs = msgspec.json.schema_components(messages, ref_template="#/$defs/{name}")
    for cls in messages:
        entry = defs[cls.__name__]
        entry["x-msg-id"] = cls.__msg_id__
        if cls.__reply__ is not None:
            entry["x-reply"] = cls.__reply__.__name__
    _urlsafe_bytes(defs)
    return {
        "$schema": DIALECT,
        "title": f"{title} message catalogue",
        "description": (
            "A frame is msg_id uint32 BE | length uint32 BE | value; under the json "
            "protocol the value is one of the objects below, chosen by x-msg-id. "
            "Unknown fields are ignored."
        ),
        "oneOf": [{"$ref": f"#/$defs/{cls.__name__}"} for cls in messages],
        "$defs": defs,
    }


def render_json_schema(catalog: Catalog, title: str = "sgs") -> str:
    """:func:`catalog_schema` as indented JSON text."""
    return json.dumps(catalog_schema(catalog, title), indent=2, ensure_ascii=False) + "\n"


def _urlsafe_bytes(node: Any) -> None:
    """Bytes travel as url-safe base64 on the json wire (either alphabet is read)."""
    if isinstance(node, dict):
        if node.get("contentEncoding") == "base64":
            node["contentEncoding"] = "base64url"
        for value in node.values():
            _urlsafe_bytes(value)
    elif isinstance(node, list):
        for value in node:
            _urlsafe_bytes(value)
