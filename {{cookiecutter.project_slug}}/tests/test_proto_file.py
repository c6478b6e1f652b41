"""The .proto file we hand to client developers, compiled by the real protoc.

A client in another language builds its classes from this file; these tests
prove that those classes read the server's bytes and that the server reads
theirs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import fwkit
from fwkit import Bag, BagReq, Item, RawConn, frame

from {{ cookiecutter.package_name }} import messages
from {{ cookiecutter.package_name }}.sgs import render_proto
from {{ cookiecutter.package_name }}.sgs.testing import running_server

grpc_protoc = pytest.importorskip("grpc_tools.protoc")
PROTO_PACKAGE = "{{ cookiecutter.package_name }}_game"


def compile_proto(tmp_path: Path, text: str, name: str) -> ModuleType:
    src = tmp_path / f"{name}.proto"
    src.write_text(text)
    code = grpc_protoc.main(["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", str(src)])
    assert code == 0, text
    spec = importlib.util.spec_from_file_location(f"{name}_pb2", tmp_path / f"{name}_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_game_catalogue_compiles_with_protoc(tmp_path: Path) -> None:
    text = render_proto(messages.catalog, package=PROTO_PACKAGE)
    pb2 = compile_proto(tmp_path, text, "game_messages")
    for cls in messages.catalog:
        assert hasattr(pb2, cls.__name__), cls.__name__
        assert f"// msg_id = {cls.__msg_id__}\nmessage {cls.__name__} " in text


async def test_compiled_classes_speak_with_the_server(tmp_path: Path) -> None:
    pb2 = compile_proto(tmp_path, render_proto(fwkit.catalog, package="fwtest"), "fwtest_messages")
    # Built by protoc's classes, as a client in another language would.
    request = pb2.BagReq(
        bag=pb2.Bag(
            owner="ana",
            items=[pb2.Item(name="sword", qty=1), pb2.Item(name="potion", qty=-3)],
            tags=["a", "b"],
            weight=2.5,
            sealed=True,
            blob=b"\x00\xff",
        )
    )
    async with running_server(fwkit.router, fwkit.catalog, protocol="protobuf") as server:
        raw = await RawConn.open(server.port or 0)
        raw.send(frame(BagReq.__msg_id__, request.SerializeToString()))
        msg_id, value = await raw.read_frame()
        await raw.close()
    assert msg_id == Bag.__msg_id__
    reply = pb2.Bag.FromString(value)
    assert reply.owner == "ana"
    assert [(i.name, i.qty) for i in reply.items] == [("sword", 1), ("potion", -3)]
    assert list(reply.tags) == ["a", "b"] and reply.weight == 2.5 and reply.sealed
    assert reply.blob == b"\x00\xff"
    assert not reply.HasField("note")  # optional and unset stays unset
    # And our codec reads protoc's bytes into the same message.
    ours = server.codec.decode(Bag.__msg_id__, value)
    assert ours == Bag(
        owner="ana",
        items=[Item(name="sword", qty=1), Item(name="potion", qty=-3)],
        tags=["a", "b"],
        weight=2.5,
        sealed=True,
        blob=b"\x00\xff",
    )
    await asyncio.sleep(0)
