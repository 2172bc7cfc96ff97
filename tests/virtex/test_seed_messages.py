"""The README's HttpMessage example (seed/message_roundtrip.py) and RequestHandler.validate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
from PIL import Image

from servekit import HttpMessage
from servekit.codecs import decode_numpy, encode_pil
from support.virtex_seed import run_seed


def test_seed_message_example_recovers_the_arrays_with_dtype_and_shape() -> None:
    seed = run_seed("message_roundtrip.py")
    for decoded, original in (
        (seed["req1_decoded"], seed["req1"]),
        (seed["req2_decoded"], seed["req2"]),
    ):
        assert isinstance(decoded, np.ndarray)
        assert decoded.dtype == np.float32 and decoded.shape == (2, 2)
        np.testing.assert_array_equal(decoded, original)


def test_json_is_the_body_as_a_string_and_rebuilds_bytes_elements() -> None:
    message = HttpMessage(data=[b"\x00\xff", "text", 3, None], id="r1")
    text = message.json
    assert isinstance(text, str)
    rebuilt = HttpMessage(**orjson.loads(text))
    assert rebuilt.data == [b"\x00\xff", "text", 3, None]
    assert rebuilt.fields == {"id": "r1"}


def test_a_body_field_named_self_is_kept_not_a_crash() -> None:
    parsed = HttpMessage.from_bytes(b'{"data": [1], "self": 2}')
    assert parsed.data == [1] and parsed.fields == {"self": 2}


def test_validate_at_sizes_1_and_max_batch_size_in_a_loop(seed_path: Path) -> None:
    """The README: validate on 1 and ``max_batch_size`` elements, repeatedly."""
    from handlers import expected_prediction, request_handler_x

    max_batch_size = 128  # as in the README's http_server example
    images = [Image.new("RGB", (8, 8), (i, 2 * i, 255 - i)) for i in range(max_batch_size)]
    for _ in range(5):
        for size in (1, max_batch_size):
            message = HttpMessage(data=images[:size]).encode(encode_pil)
            response = request_handler_x.validate(message).decode(decode_numpy)
            assert len(response.data) == size
            for image, prediction in zip(images[:size], response.data, strict=True):
                assert prediction.dtype == np.float32 and prediction.shape == (4,)
                np.testing.assert_allclose(prediction, expected_prediction(image), rtol=1e-6)
