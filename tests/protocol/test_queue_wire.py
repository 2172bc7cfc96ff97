"""The queue wire format agrees byte for byte with the published queueservice.proto."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from servekit.protocol.queue_wire import (
    WireError,
    decode_frame,
    decode_list,
    encode_frame,
    encode_list,
    encode_record,
)
from servekit.queue.record import Record


def _classes() -> tuple[Any, Any]:
    """Message classes built from the same definitions as queueservice.proto."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="servekit_test_queueservice.proto", package="streaming", syntax="proto3"
    )
    frame = file.message_type.add(name="DataFrameProto")
    entry = frame.nested_type.add(name="TagsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    frame.field.add(name="index", number=1, type=F.TYPE_UINT64, label=F.LABEL_OPTIONAL)
    frame.field.add(
        name="tags",
        number=2,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".streaming.DataFrameProto.TagsEntry",
    )
    frame.field.add(name="data", number=3, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    frame.field.add(name="message", number=4, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    listing = file.message_type.add(name="DataFrameListProto")
    listing.field.add(
        name="index",
        number=1,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".streaming.DataFrameProto",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("streaming.DataFrameProto")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("streaming.DataFrameListProto")),
    )


FrameProto, ListProto = _classes()

frames = st.tuples(
    st.integers(0, 2**64 - 1),
    st.binary(max_size=300),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
    st.text(max_size=10),
)


@given(frames)
def test_protobuf_parses_what_we_encode(frame: tuple[int, bytes, dict[str, str], str]) -> None:
    index, data, tags, message = frame
    parsed = FrameProto.FromString(encode_frame(index, data, tags, message))
    assert (parsed.index, parsed.data, dict(parsed.tags), parsed.message) == frame


@given(frames)
def test_we_decode_what_protobuf_encodes(frame: tuple[int, bytes, dict[str, str], str]) -> None:
    index, data, tags, message = frame
    raw = FrameProto(index=index, data=data, tags=tags, message=message).SerializeToString()
    decoded = decode_frame(raw)
    assert (decoded.index, decoded.data, decoded.tags, decoded.message) == frame


@given(st.lists(frames, max_size=5))
def test_lists_round_trip_through_protobuf(items: list[Any]) -> None:
    raw = encode_list(encode_frame(*f) for f in items)
    parsed = ListProto.FromString(raw)
    assert [(f.index, f.data, dict(f.tags), f.message) for f in parsed.index] == items
    decoded = decode_list(parsed.SerializeToString())
    assert [(f.index, f.data, f.tags, f.message) for f in decoded] == items


def test_encoding_matches_protobuf_bytes_for_one_tag() -> None:
    ours = encode_frame(300, b"abc", {"k": "v"})
    theirs = FrameProto(index=300, data=b"abc", tags={"k": "v"}).SerializeToString()
    assert ours == theirs


def test_record_carries_request_id_as_a_tag_and_index_only_drops_data() -> None:
    record = Record(7, b"payload", {"a": "b"}, "rid-1")
    full = decode_frame(encode_record(record))
    assert (full.index, full.data, full.tags) == (7, b"payload", {"a": "b", "requestId": "rid-1"})
    assert decode_frame(encode_record(record, index_only=True)).data == b""


def test_unknown_fields_and_wire_types_are_skipped_like_protobuf_does() -> None:
    unknown = b"\x28\x05" + b"\x31" + b"\x00" * 8 + b"\x3d" + b"\x00" * 4 + b"\x42\x01z"
    wrong_type = b"\x1d\x00\x00\x00\x00"  # data (field 3) as a fixed32
    raw = unknown + wrong_type + encode_frame(3, b"d")
    assert decode_frame(raw).data == FrameProto.FromString(raw).data == b"d"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x0a\xff\xff",  # length runs past the end
        b"\x08",  # truncated varint
        b"\x08" + b"\xff" * 11,  # varint too long
        b"\x0b",  # group start: unsupported wire type
        b"\x00\x01",  # field number 0
        b"\x22\x02\xc3\x28",  # message that is not UTF-8
    ],
)
def test_garbage_raises_wire_error(garbage: bytes) -> None:
    with pytest.raises(WireError):
        decode_frame(garbage)


@pytest.mark.parametrize("garbage", [b"\x0a\x05\x08", b"\x0a\xff\xff"])
def test_garbage_list_raises_wire_error(garbage: bytes) -> None:
    with pytest.raises(WireError):
        decode_list(garbage)


def test_published_streaming_messages_load_beside_ours_in_the_default_pool() -> None:
    """The EAS SDK's ``streaming`` package and servekit's own never clash in one process."""
    script = textwrap.dedent(
        """
        from google.protobuf import descriptor_pb2, descriptor_pool
        from servekit.protocol.queue_pb import queueservice_pb2

        file = descriptor_pb2.FileDescriptorProto()
        queueservice_pb2.DESCRIPTOR.CopyToProto(file)
        file.name, file.package = "queueservice.proto", "streaming"
        for message in file.message_type:
            for f in message.field:
                if f.type_name:
                    f.type_name = f.type_name.replace(".servekit.eas.queue.", ".streaming.")
        descriptor_pool.Default().Add(file)  # raises if a name clashed
        print(descriptor_pool.Default().FindMessageTypeByName("streaming.DataFrameProto").name)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "DataFrameProto"
