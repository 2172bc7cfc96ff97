"""``request_handler_x``, which the Virtex README uses but never defines: a tiny image model.

It takes PIL images (``encode_pil``), averages each colour channel and applies a fixed 3x4
linear layer, so a prediction is a float32 array of 4 values a test can compute itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL.Image import Image

from servekit import RequestHandler
from servekit.codecs import decode_pil, encode_numpy

WEIGHTS = np.arange(12, dtype=np.float32).reshape(3, 4) / 10


def features(image: Image) -> np.ndarray:
    """Per-channel mean of an image, scaled to 0..1."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return pixels.mean(axis=(0, 1)) / 255


def expected_prediction(image: Image) -> np.ndarray:
    return features(image) @ WEIGHTS


class ImageModel(RequestHandler):
    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def process_request(self, data: list[Any]) -> np.ndarray:
        self.batch_sizes.append(len(data))
        return np.stack([features(decode_pil(x)) for x in data])

    def run_inference(self, model_input: np.ndarray) -> np.ndarray:
        return model_input @ WEIGHTS

    def process_response(self, output: np.ndarray) -> bytes:
        return encode_numpy(output)


request_handler_x = ImageModel()
