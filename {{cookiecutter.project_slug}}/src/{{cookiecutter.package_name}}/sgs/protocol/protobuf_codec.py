"""Real protobuf wire encoding, with descriptors built from the message declarations.

No ``protoc`` step and no generated ``_pb2`` modules to keep in sync: the
message declarations (msgspec Structs) are the single source, a proto3 schema is derived from
them at start-up (field numbers follow declaration order), and
:func:`render_proto` writes the same schema as a ``.proto`` file for client
developers in other languages.
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Union

import msgspec
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..connector import HEADER
from ..message import Catalog, Message, field_types, has_constraints
from .base import Codec

_pack_header = HEADER.pack
# Before 3.12 a class whose metaclass is written in Python (Message's
# MessageMeta) is called without vectorcall: about 1k instructions more per
# construction than msgspec.structs.replace on a template, which is what the
# generated decoders use there. From 3.12 the call is the cheaper one.
_SLOW_METACLASS_CALL = sys.version_info < (3, 12)

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[type, tuple[int, str]] = {
    bool: (_F.TYPE_BOOL, "bool"),
    int: (_F.TYPE_INT64, "int64"),
    float: (_F.TYPE_DOUBLE, "double"),
    str: (_F.TYPE_STRING, "string"),
    bytes: (_F.TYPE_BYTES, "bytes"),
}


@dataclass(frozen=True)
class _Field:
    name: str
    number: int
    proto_type: int
    type_name: str  # proto spelling: "int64", or a message name
    repeated: bool
    optional: bool
    nested: type[msgspec.Struct] | None
    is_enum: bool


def _resolve(owner: type[msgspec.Struct], name: str, annotation: Any) -> tuple[Any, bool, bool]:
    """Strip ``X | None``, ``list[X]`` and ``Annotated``: (inner type, repeated, optional)."""
    optional = False
    annotation = _plain(annotation)
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{owner.__qualname__}.{name}: unions are not supported by protobuf")
        optional = True
        annotation = _plain(args[0])
        origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(annotation)
        if optional:
            raise TypeError(f"{owner.__qualname__}.{name}: optional lists are not supported")
        return (_plain(args[0]) if args else str), True, False
    return annotation, False, optional


def _plain(tp: Any) -> Any:
    """``tp`` without ``Annotated`` constraints (they are checked on decode, not in the schema)."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _scalar_of(owner: type[msgspec.Struct], name: str, tp: Any) -> tuple[int, str, bool]:
    if typing.get_origin(tp) is Literal:
        values = typing.get_args(tp)
        tp = type(values[0])
    is_enum = isinstance(tp, type) and issubclass(tp, enum.Enum)
    if is_enum:
        tp = str if issubclass(tp, str) else int
    for py_type, (proto_type, spelling) in _SCALARS.items():
        if isinstance(tp, type) and issubclass(tp, py_type):
            return proto_type, spelling, is_enum
    raise TypeError(f"{owner.__qualname__}.{name}: type {tp!r} has no protobuf mapping")


class ProtoSchema:
    """The proto3 schema derived from a catalogue, plus the runtime classes."""

    def __init__(self, catalog: Catalog, package: str = "sgs") -> None:
        self.package = package
        self.catalog = catalog
        self.fields: dict[type[msgspec.Struct], list[_Field]] = {}
        self.order: list[type[msgspec.Struct]] = []
        for cls in catalog:
            self._collect(cls)
        names: dict[str, type[msgspec.Struct]] = {}
        for model in self.order:
            other = names.setdefault(model.__name__, model)
            if other is not model:
                raise TypeError(
                    f"two models are named {model.__name__}; protobuf needs unique names"
                )
        self.file = self._file_proto()
        pool = descriptor_pool.DescriptorPool()
        pool.Add(self.file)
        self.classes: dict[type[msgspec.Struct], Any] = {
            model: message_factory.GetMessageClass(
                pool.FindMessageTypeByName(f"{package}.{model.__name__}")
            )
            for model in self.order
        }

    def _collect(self, model: type[msgspec.Struct]) -> None:
        if model in self.fields:
            return
        self.fields[model] = []  # guards recursion
        specs: list[_Field] = []
        for number, (name, annotation) in enumerate(field_types(model).items(), start=1):
            tp, repeated, optional = _resolve(model, name, annotation)
            if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
                self._collect(tp)
                specs.append(
                    _Field(
                        name, number, _F.TYPE_MESSAGE, tp.__name__, repeated, optional, tp, False
                    )
                )
            else:
                proto_type, spelling, is_enum = _scalar_of(model, name, tp)
                specs.append(
                    _Field(name, number, proto_type, spelling, repeated, optional, None, is_enum)
                )
        self.fields[model] = specs
        self.order.append(model)

    def _file_proto(self) -> descriptor_pb2.FileDescriptorProto:
        fdp = descriptor_pb2.FileDescriptorProto(
            name=f"{self.package}/messages.proto", package=self.package, syntax="proto3"
        )
        for model in self.order:
            dp = fdp.message_type.add(name=model.__name__)
            for spec in self.fields[model]:
                fp = dp.field.add(name=spec.name, number=spec.number, type=spec.proto_type)
                fp.label = _F.LABEL_REPEATED if spec.repeated else _F.LABEL_OPTIONAL
                if spec.nested is not None:
                    fp.type_name = f".{self.package}.{spec.type_name}"
                if spec.optional:
                    fp.proto3_optional = True
                    fp.oneof_index = len(dp.oneof_decl)
                    dp.oneof_decl.add(name=f"_{spec.name}")
        return fdp

    def render(self) -> str:
        """The schema as ``.proto`` text, each top-level message tagged with its msg_id."""
        lines = [
            "// Generated by sgs from the message catalogue (messages.py); do not edit.",
            "// A frame on the wire: msg_id uint32 BE | length uint32 BE | value.",
            "// The value is the protobuf encoding of the message named by msg_id below.",
            'syntax = "proto3";',
            "",
            f"package {self.package};",
        ]
        for model in self.order:
            lines.append("")
            msg_id = getattr(model, "__msg_id__", None)
            if msg_id is not None:
                lines.append(f"// msg_id = {msg_id}")
            lines.append("message " + model.__name__ + " {")
            for spec in self.fields[model]:
                label = "repeated " if spec.repeated else "optional " if spec.optional else ""
                lines.append(f"  {label}{spec.type_name} {spec.name} = {spec.number};")
            lines.append("}")
        return "\n".join(lines) + "\n"


def render_proto(catalog: Catalog, package: str = "sgs") -> str:
    """The ``.proto`` file for a catalogue (the CLI's ``proto`` command writes it)."""
    return ProtoSchema(catalog, package).render()


class ProtobufCodec(Codec):
    name = "protobuf"

    def __init__(self, catalog: Catalog, package: str = "sgs") -> None:
        super().__init__(catalog)
        self.schema = ProtoSchema(catalog, package)
        self._classes = self.schema.classes
        self._fields = self.schema.fields
        # Messages made of plain scalars (and lists of them) skip the generic
        # walk: each field maps one to one onto the protobuf message's field.
        self._flat: dict[type[msgspec.Struct], tuple[tuple[str, ...], tuple[str, ...]]] = {
            model: (
                tuple(f.name for f in fields if not f.repeated),
                tuple(f.name for f in fields if f.repeated),
            )
            for model, fields in self._fields.items()
            if all(f.nested is None and not f.is_enum and not f.optional for f in fields)
        }
        self._frame_encoders: dict[type[msgspec.Struct], Callable[[Any], bytes]] = {
            model: self._frame_encoder(model)
            for model in self._flat
            if getattr(model, "__msg_id__", None) is not None
        }

    def _frame_encoder(self, cls: type[msgspec.Struct]) -> Callable[[Any], bytes]:
        """A generated function writing one frame of ``cls`` through a reused message.

        Setting the fields of one kept protobuf object and serializing it is
        cheaper than building a new object from keyword arguments; every field
        is assigned on each call (repeated ones cleared first), so nothing
        leaks from one message into the next.
        """
        scalars, repeated = self._flat[cls]
        lines = ["def encode(msg):", "    if type(msg) is not CLS:", "        return generic(msg)"]
        lines += [f"    pb.{name} = msg.{name}" for name in scalars]
        for name in repeated:
            lines += [f"    pb.ClearField({name!r})", f"    pb.{name}.extend(msg.{name})"]
        lines += [
            "    value = pb.SerializeToString()",
            "    return pack(MSG_ID, len(value)) + value",
        ]
        namespace: dict[str, Any] = {
            "pb": self._classes[cls](),
            "pack": _pack_header,
            "MSG_ID": cls.__msg_id__,  # type: ignore[attr-defined]
            "CLS": cls,
            "generic": self.encode_frame,
        }
        exec(
            compile("\n".join(lines) + "\n", f"<protobuf encoder {cls.__name__}>", "exec"),
            namespace,
        )
        encode: Callable[[Any], bytes] = namespace["encode"]
        return encode

    def fast_decoder(self, cls: type[Message]) -> Callable[[bytes], Message]:
        flat = self._flat.get(cls)
        if flat is None:
            return super().fast_decoder(cls)
        scalars, repeated = flat
        # Generated once per message type, like dataclasses does for __init__:
        # straight-line attribute reads cost a fraction of a loop or a
        # comprehension, and this runs for every message received. upb has
        # already typed every value as the declaration says (int64, string,
        # ...), so they go straight into the Struct; a class with constraints
        # or a __post_init__ check goes through msgspec.convert, which runs both.
        # One protobuf object per type is parsed into again and again
        # (ParseFromString clears it first): a new one per message costs
        # about 1.9k instructions more. Values read from it are copies.
        items = [f"{name}=pb.{name}" for name in scalars]
        items += [f"{name}=list(pb.{name})" for name in repeated]
        if has_constraints(cls):
            call = "convert(dict(" + ", ".join(items) + "), cls)"
        elif _SLOW_METACLASS_CALL:
            call = "replace(template" + "".join(", " + item for item in items) + ")"
        else:
            call = "cls(" + ", ".join(items) + ")"
        source = f"def decode(data):\n    parse(data)\n    return {call}\n"
        pb = self._classes[cls]()
        namespace: dict[str, Any] = {
            "pb": pb,
            "parse": pb.ParseFromString,
            "convert": msgspec.convert,
            "replace": msgspec.structs.replace,
            "template": cls(**dict.fromkeys(field_types(cls))),
            "cls": cls,
        }
        exec(compile(source, f"<protobuf decoder {cls.__name__}>", "exec"), namespace)
        decode: Callable[[bytes], Message] = namespace["decode"]
        return decode

    def _to_pb(self, obj: msgspec.Struct) -> Any:
        kwargs: dict[str, Any] = {}
        for spec in self._fields[type(obj)]:
            value = getattr(obj, spec.name)
            if value is None:
                continue
            if spec.nested is not None:
                value = [self._to_pb(v) for v in value] if spec.repeated else self._to_pb(value)
            elif spec.is_enum:
                value = [v.value for v in value] if spec.repeated else value.value
            kwargs[spec.name] = value
        return self._classes[type(obj)](**kwargs)

    def _to_dict(self, model: type[msgspec.Struct], pb: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in self._fields[model]:
            if spec.optional and not pb.HasField(spec.name):
                continue
            value = getattr(pb, spec.name)
            if spec.nested is not None:
                nested = spec.nested
                if spec.repeated:
                    value = [self._to_dict(nested, v) for v in value]
                else:
                    value = self._to_dict(nested, value)
            elif spec.repeated:
                value = list(value)
            out[spec.name] = value
        return out

    def encode_value(self, msg: Message) -> bytes:
        return self._to_pb(msg).SerializeToString()

    def frame_encoder(self, cls: type[Message] | None) -> Callable[[Message], bytes]:
        encode = self._frame_encoders.get(cls) if cls is not None else None
        return encode if encode is not None else self.encode_frame

    def encode_frame(self, msg: Message) -> bytes:
        encode = self._frame_encoders.get(type(msg))
        if encode is not None:
            return encode(msg)
        value = self._to_pb(msg).SerializeToString()
        return _pack_header(msg.__msg_id__, len(value)) + value

    def decode_value(self, cls: type[Message], data: bytes) -> Message:
        pb = self._classes[cls].FromString(data)
        return msgspec.convert(self._to_dict(cls, pb), cls, strict=False)
