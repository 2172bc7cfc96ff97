"""Codecs: numpy ⇄ v2 tensors, and Python objects ⇄ bytes (pickle only when allowed)."""

from servekit.codecs.objects import (
    decode_base64,
    decode_bytes,
    decode_numpy,
    decode_pandas,
    decode_pickle,
    decode_pil,
    decode_torch,
    encode_base64,
    encode_bytes,
    encode_numpy,
    encode_pandas,
    encode_pickle,
    encode_pil,
    encode_torch,
)
from servekit.codecs.tensors import (
    V2_DATATYPES,
    decode_tensor,
    encode_tensor,
    numpy_dtype,
    v2_datatype,
)

__all__ = [
    "V2_DATATYPES",
    "decode_base64",
    "decode_bytes",
    "decode_numpy",
    "decode_pandas",
    "decode_pickle",
    "decode_pil",
    "decode_tensor",
    "decode_torch",
    "encode_base64",
    "encode_bytes",
    "encode_numpy",
    "encode_pandas",
    "encode_pickle",
    "encode_pil",
    "encode_tensor",
    "encode_torch",
    "numpy_dtype",
    "v2_datatype",
]
