"""torch tensors ⇄ the numpy codec's bytes (torch is imported only when these are called).

A tensor is detached and moved to the CPU first. bfloat16 travels as BF16 raw bits, so it
needs neither numpy support for it nor ml_dtypes on either side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from servekit.codecs._ndarray import (
    NUMERIC,
    decode_numpy,
    encode_numpy,
    encode_raw,
    from_buffer,
    parse,
)
from servekit.errors import BadRequest

if TYPE_CHECKING:
    import torch

__all__ = ["decode_torch", "encode_torch"]


def encode_torch(tensor: torch.Tensor) -> bytes:
    """Encode a tensor of any v2 datatype (bfloat16 included) as self-describing bytes."""
    import torch

    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        bits = t.view(torch.int16).numpy().reshape(-1).view(np.uint8)
        return encode_raw(NUMERIC, "BF16", tuple(t.shape), bits.data)
    return encode_numpy(t.numpy())


def decode_torch(data: bytes | bytearray | memoryview) -> torch.Tensor:
    """Decode bytes from :func:`encode_torch` or :func:`encode_numpy` into a CPU tensor."""
    import torch

    parsed = parse(data)
    if parsed.kind != NUMERIC:
        raise BadRequest("torch has no string tensors: decode this array with decode_numpy")
    if parsed.name == "BF16":
        bits = from_buffer(parsed, np.dtype("<i2"))
        return torch.from_numpy(bits.copy()).view(torch.bfloat16)
    array = decode_numpy(data)
    # torch warns on read-only numpy memory, so copy only then.
    return torch.from_numpy(array if array.flags.writeable else array.copy())
