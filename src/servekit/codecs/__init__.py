"""Codecs: turn wire payloads into numpy arrays and back."""

from servekit.codecs.tensors import (
    V2_DATATYPES,
    decode_tensor,
    encode_tensor,
    numpy_dtype,
    v2_datatype,
)

__all__ = ["V2_DATATYPES", "decode_tensor", "encode_tensor", "numpy_dtype", "v2_datatype"]
