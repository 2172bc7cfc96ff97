"""PIL images ⇄ PNG bytes (PIL is imported only when these are called)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from servekit.errors import BadRequest

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["decode_pil", "encode_pil"]


def encode_pil(image: Image, format: str = "PNG") -> bytes:
    """Encode an image, as lossless PNG unless another format PIL can write is named."""
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def decode_pil(data: bytes | bytearray | memoryview) -> Image:
    """Decode and fully load an image (PNG, JPEG, … whatever PIL recognises)."""
    from PIL import Image, UnidentifiedImageError

    try:
        # An in-memory file holds nothing to release, so the image may keep it.
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise BadRequest("invalid image: not in any format PIL recognises") from None
    except Image.DecompressionBombError as exc:
        raise BadRequest(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # how PIL reports truncated data
        raise BadRequest(f"invalid or truncated image: {exc}") from None
    return image
