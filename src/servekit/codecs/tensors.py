"""numpy arrays ⇄ Open Inference Protocol (KServe v2) tensors, JSON and binary.

Decoding reads what a client sent, so every problem is a ``BadRequest`` naming the input.
Encoding writes what a model produced: an array no v2 datatype can hold is a ``ModelError``;
bytes that are not UTF-8 and so cannot travel in JSON are a ``BadRequest`` (the client can
ask for binary output instead).

Binary tensors follow Triton's binary tensor data extension: little-endian, row-major, no
padding; BOOL is one byte 0/1; each BYTES element is a 4-byte little-endian length then
its bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from servekit.codecs._json_numbers import MalformedArray, NotPlain, NumberArray
from servekit.errors import BadRequest, ModelError, PayloadTooLarge

__all__ = [
    "V2_DATATYPES",
    "decode_tensor",
    "encode_tensor",
    "numpy_dtype",
    "v2_datatype",
]

_NUMERIC: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_OBJECT = np.dtype(object)
_DTYPES: dict[str, np.dtype] = {**_NUMERIC, "BYTES": _OBJECT}
V2_DATATYPES: tuple[str, ...] = tuple(_DTYPES)
_BY_KIND_SIZE: dict[tuple[str, int], str] = {
    (dt.kind, dt.itemsize): name for name, dt in _NUMERIC.items()
}
_INT_RANGE: dict[str, tuple[int, int]] = {
    name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max))
    for name, dt in _NUMERIC.items()
    if dt.kind in "iu"
}
# A finite value at or beyond this magnitude rounds to infinity in the narrower float.
_FLOAT_LIMIT: dict[str, float] = {
    "FP16": 65504.0 + 2.0**4,
    "FP32": float(np.finfo(np.float32).max) + 2.0**103,
}
_U32 = struct.Struct("<I")
_MISSING: Any = object()
#: numpy's limits: at most 64 dimensions, and the product of the non-zero dimensions times the
#: item size (8 bytes at most here) must fit a signed 64-bit size, even with no elements.
MAX_DIMS = 64
MAX_ELEMENTS = 2**60
#: JSON data of at least this many elements is converted a slice at a time (about this many).
CHUNK_ELEMENTS = 1 << 18
_OBJECTS = np.empty(0, dtype=object)
_EXACT_INT = 2**53  # every integer up to this magnitude is exact in float64


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype for a v2 datatype name (BYTES is ``object``)."""
    try:
        return _DTYPES[datatype]
    except (KeyError, TypeError):
        raise BadRequest(
            f"unknown datatype {datatype!r}; expected one of {', '.join(V2_DATATYPES)}"
        ) from None


def v2_datatype(dtype: Any) -> str:
    """The v2 datatype name for a numpy dtype (str, bytes and object arrays are BYTES)."""
    dt = np.dtype(dtype)
    if dt.kind in "OUS":
        return "BYTES"
    name = _BY_KIND_SIZE.get((dt.kind, dt.itemsize))
    if name is None:
        raise ModelError(f"numpy dtype {dt} has no Open Inference Protocol datatype")
    return name


# ---------------------------------------------------------------------------------- decode


def decode_tensor(
    spec: dict[str, Any],
    raw: bytes | bytearray | memoryview | None = None,
    *,
    consume: bool = False,
) -> np.ndarray:
    """Decode one v2 input tensor from its JSON spec, or from ``raw`` binary data if given.

    The result is always writable; decoding from a writable buffer (``bytearray``) does not
    copy numeric data. With ``consume=True`` a large numeric ``data`` list is emptied as it
    is converted, so its Python objects are freed while the array fills (peak memory near
    the list's, not the list's plus the array's). The v2 decoder may pass ``data`` as a
    ``NumberArray`` cut from a large body, converted from its text a piece at a time.
    """
    if not isinstance(spec, dict):
        raise BadRequest(f"an input must be a JSON object, got {_type_name(spec)}")
    name = spec.get("name")
    if not isinstance(name, str):
        raise BadRequest(f"an input's 'name' must be a string, got {_type_name(name)}")
    shape = _shape(name, spec.get("shape", _MISSING))
    datatype = spec.get("datatype", _MISSING)
    if datatype is _MISSING:
        raise BadRequest(f"input {name!r}: missing 'datatype'")
    if not isinstance(datatype, str) or datatype not in _DTYPES:
        raise BadRequest(
            f"input {name!r}: unknown datatype {datatype!r}; "
            f"expected one of {', '.join(V2_DATATYPES)}"
        )
    parameters = spec.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise BadRequest(f"input {name!r}: 'parameters' must be an object")
    count = math.prod(shape)
    if count >= MAX_ELEMENTS or (not count and _too_big(shape)):
        raise BadRequest(
            f"input {name!r}: shape {shape} is too large for any array "
            "(the product of its non-zero dimensions must be below 2**60)"
        )
    if raw is not None:
        if "data" in spec:
            raise BadRequest(f"input {name!r}: has both 'data' and binary data; send one")
        if datatype == "BYTES":
            return _bytes_from_raw(name, shape, count, raw)
        return _numeric_from_raw(name, datatype, shape, count, raw)
    if "data" not in spec:
        if parameters and "binary_data_size" in parameters:
            raise BadRequest(f"input {name!r}: binary_data_size is set but no binary data came")
        raise BadRequest(f"input {name!r}: missing 'data'")
    data = spec["data"]
    if not isinstance(data, list):
        if isinstance(data, NumberArray):  # cut from a large body by the v2 decoder
            return _numeric_from_text(name, datatype, shape, count, data)
        raise BadRequest(f"input {name!r}: 'data' must be a list, got {_type_name(data)}")
    return _from_list(name, datatype, shape, count, data, consume)


def _from_list(
    name: str, datatype: str, shape: list[int], count: int, data: list[Any], consume: bool
) -> np.ndarray:
    if datatype == "BYTES":
        return _from_flat(name, datatype, shape, count, data)
    if count >= CHUNK_ELEMENTS and len(data) > 1:
        return _numeric_in_chunks(name, datatype, shape, count, data, consume)
    return _numeric_from_json(name, datatype, shape, count, data)


def _shape(name: str, shape: Any) -> list[int]:
    if shape is _MISSING:
        raise BadRequest(f"input {name!r}: missing 'shape'")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequest(
            f"input {name!r}: shape must be a list of non-negative integers, "
            f"got {_short(shape, 80)}"
        )
    if len(shape) > MAX_DIMS:
        raise BadRequest(
            f"input {name!r}: shape has {len(shape)} dimensions; at most {MAX_DIMS} are supported"
        )
    return shape


def _too_big(shape: list[int]) -> bool:
    """Whether numpy refuses ``shape`` although it has no elements."""
    return math.prod(d for d in shape if d) >= MAX_ELEMENTS


def _count_error(name: str, shape: list[int], count: int, got: int) -> BadRequest:
    return BadRequest(f"input {name!r}: shape {shape} has {count} elements but data has {got}")


def _numeric_from_json(
    name: str, datatype: str, shape: list[int], count: int, data: list[Any]
) -> np.ndarray:
    # Fast path: numpy infers a dtype from the nested lists in C; anything it cannot
    # vouch for goes to the element-by-element path, which also writes the error message.
    # Known leniency: numpy folds booleans mixed among numbers into the numbers.
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        return _from_flat(name, datatype, shape, count, data)
    if arr.size != count:
        if arr.dtype.kind == "O":
            return _from_flat(name, datatype, shape, count, data)
        raise _count_error(name, shape, count, arr.size)
    target = _NUMERIC[datatype]
    if count == 0:
        return np.empty(shape, dtype=target)
    if not _vouched(arr, datatype):
        return _from_flat(name, datatype, shape, count, data)
    return arr.astype(target, copy=False).reshape(shape)


def _vouched(arr: np.ndarray, datatype: str) -> bool:
    """Whether every element of numpy's guess ``arr`` is a valid value of ``datatype``."""
    kind = arr.dtype.kind
    if datatype == "BOOL":
        return kind == "b"
    target = _NUMERIC[datatype]
    if target.kind in "iu":
        if kind not in "iu":
            return False
        lo, hi = _INT_RANGE[datatype]
        return arr.dtype == target or not arr.size or (arr.min() >= lo and arr.max() <= hi)
    limit = _FLOAT_LIMIT.get(datatype)
    return kind in "fiu" and not (limit is not None and arr.size and _may_overflow(arr, limit))


def _numeric_in_chunks(
    name: str, datatype: str, shape: list[int], count: int, data: list[Any], consume: bool
) -> np.ndarray:
    """Large data, converted a slice of ``data`` at a time straight into the result: no
    full-size intermediate array, and other threads (the event loop) run between slices.

    Slices go from the end, so with ``consume`` each converted slice is deleted cheaply and
    its objects freed; ``np.empty`` pages are only touched as they fill.
    """
    try:
        out = np.empty(count, dtype=_NUMERIC[datatype])
    except MemoryError:  # a declared shape no data could fill: say what the data holds
        got = sum(1 for _ in _flatten(data))
        if got != count:
            raise _count_error(name, shape, count, got) from None
        raise PayloadTooLarge(f"input {name!r}: shape {shape} does not fit in memory") from None
    step = max(1, len(data) * CHUNK_ELEMENTS // count)
    end = count  # out[end:] is filled
    stop = len(data)
    while stop:
        start = max(0, stop - step)
        part = data[start:stop]
        try:
            arr = np.asarray(part)
        except (ValueError, TypeError):  # ragged: flatten it exactly below
            arr = _OBJECTS
        if arr.dtype.kind == "O" or not _vouched(arr, datatype):
            arr = _exact_part(name, datatype, data, start, part)
        if arr.size > end:
            got = count - end + sum(1 for _ in _flatten(data[:stop]))
            raise _count_error(name, shape, count, got)
        out[end - arr.size : end] = arr.reshape(-1)
        end -= arr.size
        if consume:
            del data[start:]
        stop = start
    if end:
        raise _count_error(name, shape, count, count - end)
    return out.reshape(shape)


def _exact_part(
    name: str, datatype: str, data: list[Any], start: int, part: list[Any]
) -> np.ndarray:
    """One slice the fast path could not vouch for: checked element by element."""
    flat = list(_flatten(part))
    check = _CHECKS[datatype]
    for i, value in enumerate(flat):
        problem = check(datatype, value)
        if problem:
            index = sum(1 for _ in _flatten(data[:start])) + i
            raise BadRequest(f"input {name!r}: element {index} ({_short(value)}) {problem}")
    return np.array(flat, dtype=_NUMERIC[datatype])


def _numeric_from_text(
    name: str, datatype: str, shape: list[int], count: int, array: NumberArray
) -> np.ndarray:
    """Numbers cut from a large body, converted from their text a piece at a time: the array
    the parsed list would give, without a Python object per element at once."""
    try:
        try:
            return _from_pieces(name, datatype, shape, count, array)
        except NotPlain:
            pass  # read it whole below, once this block's traceback has let the pieces go
        return _from_list(name, datatype, shape, count, array.load(), consume=True)
    except MalformedArray as exc:
        raise BadRequest(f"malformed JSON in request body: input {name!r}: 'data' {exc}") from None


def _from_pieces(
    name: str, datatype: str, shape: list[int], count: int, array: NumberArray
) -> np.ndarray:
    if datatype != "BOOL" and array.has_booleans():
        raise NotPlain  # numpy folds booleans into numbers, or not, by what shares a slice
    total = array.elements()
    if total != count:
        for _ in array.pieces():  # a malformed array says so before its count is trusted
            pass
        raise _count_error(name, shape, count, total)
    if datatype == "BYTES":  # numbers only: the first element is already wrong
        _raise_first_problem(name, datatype, next(array.pieces()), 0)
        raise NotPlain  # not reached: no number is a string
    out = np.empty(count, dtype=_NUMERIC[datatype])
    done = 0
    for part in array.pieces():
        arr = _piece(name, datatype, part, done)
        out[done : done + arr.size] = arr
        done += arr.size
    return out.reshape(shape)


def _piece(name: str, datatype: str, part: list[Any], offset: int) -> np.ndarray:
    """One piece's numbers (elements ``offset`` on), checked as a slice of a parsed list is."""
    try:
        arr = np.asarray(part)
    except (ValueError, TypeError, OverflowError):
        arr = _OBJECTS
    if datatype in ("FP16", "FP32") and _huge_int(arr, part):
        raise NotPlain
    if arr.dtype.kind == "O" or not _vouched(arr, datatype):
        _raise_first_problem(name, datatype, part, offset)
        return np.array(part, dtype=_NUMERIC[datatype])
    return arr


def _huge_int(arr: np.ndarray, part: list[Any]) -> bool:
    """Whether ``part`` may hold an integer past 2**53: float64 cannot hold it exactly, so
    whether it reaches FP32 rounded once or twice depends on which numbers share its slice
    (its piece here, another slice when the list is parsed whole)."""
    kind = arr.dtype.kind
    if not arr.size:
        return False
    if kind in "iu":
        return bool(arr.max() > _EXACT_INT or arr.min() < -_EXACT_INT)
    if kind == "f" and not np.abs(arr).max() > _EXACT_INT:
        return False
    return kind in "fO" and any(type(v) is int and abs(v) > _EXACT_INT for v in part)


def _raise_first_problem(name: str, datatype: str, values: list[Any], offset: int) -> None:
    check = _CHECKS[datatype]
    for i, value in enumerate(values):
        problem = check(datatype, value)
        if problem:
            raise BadRequest(f"input {name!r}: element {offset + i} ({_short(value)}) {problem}")


def _may_overflow(arr: np.ndarray, limit: float) -> bool:
    # The sum of squares bounds every element and costs one BLAS call; a false alarm
    # (many large values) only sends the data down the exact path.
    if arr.dtype.kind == "f":
        return bool(np.vdot(arr, arr) >= limit * limit)
    if limit > 2.0**64:  # no 64-bit integer reaches it
        return False
    return bool(arr.max() >= limit or arr.min() <= -limit)


def _from_flat(
    name: str, datatype: str, shape: list[int], count: int, data: list[Any]
) -> np.ndarray:
    """Decode element by element: exact checks and a message naming the first bad value."""
    flat = list(_flatten(data))
    if len(flat) != count:
        raise _count_error(name, shape, count, len(flat))
    _raise_first_problem(name, datatype, flat, 0)
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = [v.encode() if isinstance(v, str) else bytes(v) for v in flat]
        return out.reshape(shape)
    return np.array(flat, dtype=_NUMERIC[datatype]).reshape(shape)


def _flatten(data: list[Any]) -> Iterator[Any]:
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def _check_bool(datatype: str, value: Any) -> str | None:
    return None if type(value) is bool else f"is not true/false, as {datatype} needs"


def _check_int(datatype: str, value: Any) -> str | None:
    if type(value) is not int:
        return f"is {_type_name(value)}, but {datatype} needs integers"
    lo, hi = _INT_RANGE[datatype]
    if not lo <= value <= hi:
        return f"is out of range for {datatype} [{lo}, {hi}]"
    return None


def _check_float(datatype: str, value: Any) -> str | None:
    if type(value) not in (int, float):
        return f"is {_type_name(value)}, but {datatype} needs numbers"
    limit = _FLOAT_LIMIT.get(datatype, math.inf)
    try:
        magnitude = abs(float(value))
    except OverflowError:
        magnitude = math.inf
    return f"is out of range for {datatype}" if magnitude >= limit else None


def _check_bytes(datatype: str, value: Any) -> str | None:
    if isinstance(value, (str, bytes)):
        return None
    return f"is {_type_name(value)}, but {datatype} data in JSON must be strings"


_CHECKS = {
    **{name: _check_int for name in _INT_RANGE},
    "BOOL": _check_bool,
    "FP16": _check_float,
    "FP32": _check_float,
    "FP64": _check_float,
    "BYTES": _check_bytes,
}


def _numeric_from_raw(
    name: str, datatype: str, shape: list[int], count: int, raw: bytes | bytearray | memoryview
) -> np.ndarray:
    dtype = _NUMERIC[datatype]
    need = count * dtype.itemsize
    if len(raw) != need:
        raise BadRequest(
            f"input {name!r}: binary data has {len(raw)} bytes but shape {shape} "
            f"of {datatype} needs {need}"
        )
    wire = dtype.newbyteorder("<")
    arr = np.frombuffer(raw, dtype=wire)
    if datatype == "BOOL" and count and arr.view(np.uint8).max() > 1:
        raise BadRequest(f"input {name!r}: BOOL binary data holds a byte other than 0 or 1")
    if wire != dtype:
        arr = arr.astype(dtype)
    elif not arr.flags.writeable:
        arr = arr.copy()
    return arr.reshape(shape)


def _bytes_from_raw(
    name: str, shape: list[int], count: int, raw: bytes | bytearray | memoryview
) -> np.ndarray:
    view = memoryview(raw)
    size = len(view)
    items: list[bytes] = []
    offset = 0
    while offset < size:
        if offset + 4 > size:
            raise BadRequest(
                f"input {name!r}: BYTES element {len(items)} has a truncated 4-byte length"
            )
        (length,) = _U32.unpack_from(view, offset)
        offset += 4
        if offset + length > size:
            raise BadRequest(
                f"input {name!r}: BYTES element {len(items)} declares {length} bytes "
                f"but only {size - offset} remain"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise _count_error(name, shape, count, len(items))
    out = np.empty(count, dtype=object)
    out[:] = items
    return out.reshape(shape)


# ---------------------------------------------------------------------------------- encode


def encode_tensor(
    name: str, array: np.ndarray, *, binary: bool = False, numpy_data: bool = False
) -> tuple[dict[str, Any], bytes | None]:
    """Encode an array as a v2 tensor: (spec with JSON ``data``, None) or (spec, raw bytes).

    With ``numpy_data=True`` numeric JSON ``data`` stays a flat numpy array: serialise the
    spec with ``orjson.OPT_SERIALIZE_NUMPY``, which is faster than ``tolist()`` and prints
    FP32 values at their own precision.
    """
    arr = np.asarray(array)
    datatype = v2_datatype(arr.dtype)
    spec: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
    if datatype == "BYTES":
        items = arr.ravel().tolist()
        if binary:
            raw = _bytes_to_raw(name, items)
            spec["parameters"] = {"binary_data_size": len(raw)}
            return spec, raw
        spec["data"] = [_json_string(name, i, v) for i, v in enumerate(items)]
        return spec, None
    if binary:
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        spec["parameters"] = {"binary_data_size": len(raw)}
        return spec, raw
    if numpy_data:
        # orjson needs a native-endian, C-contiguous array; ravel() of one is a free view.
        if not (arr.flags.c_contiguous and arr.dtype.isnative):
            arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
        spec["data"] = arr.ravel()
    else:
        spec["data"] = arr.ravel().tolist()
    return spec, None


def _as_bytes(name: str, index: int, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise ModelError(
        f"tensor {name!r}: BYTES element {index} is {_type_name(value)}; expected str or bytes"
    )


def _bytes_to_raw(name: str, items: list[Any]) -> bytes:
    parts: list[bytes] = []
    for i, value in enumerate(items):
        b = _as_bytes(name, i, value)
        parts.append(_U32.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def _json_string(name: str, index: int, value: Any) -> str:
    if isinstance(value, str):
        return value
    b = _as_bytes(name, index, value)
    try:
        return b.decode()
    except UnicodeDecodeError:
        raise BadRequest(
            f"tensor {name!r}: BYTES element {index} is not valid UTF-8, so it cannot be sent "
            "as JSON; request it as binary data (binary_data: true)"
        ) from None


# --------------------------------------------------------------------------------- helpers


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
