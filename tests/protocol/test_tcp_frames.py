"""Length-prefixed JSON frames: encoding, incremental decoding, and every way a frame goes bad."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from servekit.protocol.tcp_frames import (
    BadFrame,
    FrameDecoder,
    FrameTooLarge,
    TruncatedFrame,
    decode_frame,
    encode_frame,
)


def test_frame_is_a_big_endian_length_then_utf8_json() -> None:
    frame = encode_frame({"message": "héllo"})
    body = '{"message":"héllo"}'.encode()
    assert frame == struct.pack(">I", len(body)) + body
    assert decode_frame(frame) == {"message": "héllo"}


def test_numpy_values_are_sent_as_json_lists() -> None:
    frame = encode_frame({"data": np.arange(3, dtype=np.int32)})
    assert decode_frame(frame) == {"data": [0, 1, 2]}


def test_frames_written_the_way_dubhe_sdk_writes_them_decode() -> None:
    body = json.dumps({"flag": 1, "message": "service online"}, indent=4).encode("utf-8")
    frame = struct.pack("!i", len(body)) + body
    assert decode_frame(frame) == {"flag": 1, "message": "service online"}


def test_decoder_waits_for_a_frame_fed_one_byte_at_a_time() -> None:
    frame = encode_frame({"req_type": 3, "data": [1, 2, 3]})
    decoder = FrameDecoder()
    got = [decoder.feed(frame[i : i + 1]) for i in range(len(frame))]
    assert got[:-1] == [[]] * (len(frame) - 1)
    assert got[-1] == [{"req_type": 3, "data": [1, 2, 3]}]
    assert decoder.buffered == 0


def test_decoder_returns_every_frame_of_a_chunk_in_order_and_keeps_the_rest() -> None:
    frames = b"".join(encode_frame({"n": n}) for n in range(5))
    extra = encode_frame({"n": 5})
    decoder = FrameDecoder()
    assert decoder.feed(frames + extra[:3]) == [{"n": n} for n in range(5)]
    assert decoder.buffered == 3
    assert decoder.feed(extra[3:]) == [{"n": 5}]


def test_bad_json_frame_comes_back_in_place_and_spares_its_neighbours() -> None:
    bad = struct.pack(">I", 5) + b"{nope"
    chunk = encode_frame({"n": 1}) + bad + encode_frame({"n": 2})
    items = FrameDecoder().feed(chunk)
    assert items[0] == {"n": 1}
    assert isinstance(items[1], BadFrame)
    assert not items[1].fatal
    assert items[1].status == 400
    assert items[2] == {"n": 2}


def test_invalid_utf8_is_a_bad_frame() -> None:
    items = FrameDecoder().feed(struct.pack(">I", 3) + b'"\xff"')
    assert isinstance(items[0], BadFrame)


def test_oversized_length_ends_the_stream_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_size=1024)
    items = decoder.feed(encode_frame({"ok": 1}) + struct.pack(">I", 10**9))
    assert items[0] == {"ok": 1}
    assert isinstance(items[1], FrameTooLarge)
    assert items[1].fatal
    assert items[1].status == 413
    assert "1000000000 bytes" in str(items[1])
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"more")


def test_encoding_over_the_limit_is_refused() -> None:
    with pytest.raises(FrameTooLarge, match="over the 10-byte limit"):
        encode_frame({"data": "x" * 20}, max_size=10)


def test_eof_inside_a_frame_is_truncated_and_on_a_boundary_is_clean() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame({"a": 1}))
    decoder.eof()  # nothing left over: fine
    decoder.feed(encode_frame({"a": 2})[:-1])
    with pytest.raises(TruncatedFrame, match="inside a frame"):
        decoder.eof()


def test_decode_frame_wants_exactly_one_frame() -> None:
    two = encode_frame(1) + encode_frame(2)
    with pytest.raises(BadFrame, match="exactly one frame, got 2"):
        decode_frame(two)
    with pytest.raises(TruncatedFrame):
        decode_frame(encode_frame(1)[:-1])


def test_next_frame_takes_one_frame_at_a_time_with_its_length() -> None:
    first, second = encode_frame({"n": 1}), encode_frame({"n": 22})
    decoder = FrameDecoder()
    decoder.append(first + second[:6])
    assert decoder.pending_size == len(first)
    assert decoder.next_frame() == ({"n": 1}, len(first))
    assert decoder.pending_size == len(second)  # its header is in, its body is not
    assert decoder.next_frame() is None
    decoder.append(second[6:])
    assert decoder.next_frame() == ({"n": 22}, len(second))
    assert decoder.next_frame() is None
    assert decoder.buffered == 0


def test_pending_size_is_unknown_until_the_header_is_whole() -> None:
    decoder = FrameDecoder()
    decoder.append(encode_frame("x")[:3])
    assert decoder.pending_size is None
    assert decoder.buffered == 3


def test_next_frame_reports_an_oversized_header_once_then_nothing() -> None:
    decoder = FrameDecoder(max_size=10)
    decoder.append(struct.pack(">I", 11) + b"x" * 11)
    error, size = decoder.next_frame()  # type: ignore[misc]
    assert isinstance(error, FrameTooLarge) and size == 0
    assert decoder.next_frame() is None and decoder.pending_size is None
    with pytest.raises(FrameTooLarge):
        decoder.append(b"more")
