"""pandas DataFrame and Series ⇄ bytes, column by column, without pickle.

Layout: ``b"SKPD" | version u8 | u32 LE header length | JSON header | blocks``. The header
describes the object, its index and (for a frame) its column labels and columns; each
described array is one or more blocks made by the numpy codec, whose byte sizes the header
lists in order. Supported columns: numpy numbers and bools, datetimes and timedeltas
(tz-aware too), categoricals, nullable extension types (``Int64``, ``boolean``, ``Float64``)
and str/bytes columns (``object`` or ``string``) with missing values. Anything else, such as a
``MultiIndex`` or arbitrary objects, is refused on encoding: use ``encode_pickle`` for it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson

from servekit.codecs._ndarray import decode_numpy, encode_numpy
from servekit.errors import BadRequest

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["decode_pandas", "encode_pandas"]

MAGIC = b"SKPD"
VERSION = 1
_U32 = struct.Struct("<I")
_JSON_NAMES = (str, int, float, bool, type(None))


def encode_pandas(obj: pd.DataFrame | pd.Series) -> bytes:
    """Encode a DataFrame or Series with its index, labels and dtypes."""
    import pandas as pd

    blocks: list[bytes] = []
    if isinstance(obj, pd.DataFrame):
        header: dict[str, Any] = {
            "type": "DataFrame",
            "index": _encode_index(obj.index, blocks),
            "columns": _encode_index(obj.columns, blocks),
            "data": [_encode_values(obj.iloc[:, i], blocks) for i in range(obj.shape[1])],
        }
    elif isinstance(obj, pd.Series):
        header = {
            "type": "Series",
            "name": _json_name(obj.name, "Series name"),
            "index": _encode_index(obj.index, blocks),
            "data": _encode_values(obj, blocks),
        }
    else:
        raise TypeError(f"encode_pandas takes a DataFrame or Series, not {type(obj).__name__}")
    header["sizes"] = [len(b) for b in blocks]
    head = orjson.dumps(header)
    return b"".join([MAGIC, bytes((VERSION,)), _U32.pack(len(head)), head, *blocks])


def decode_pandas(data: bytes | bytearray | memoryview) -> pd.DataFrame | pd.Series:
    """Decode bytes made by :func:`encode_pandas` into an equal DataFrame or Series."""
    import pandas as pd

    view = memoryview(data).cast("B")
    if view[:4] != MAGIC:
        raise BadRequest("not an encoded pandas object: missing the b'SKPD' header")
    if len(view) < 9 or view[4] != VERSION:
        raise BadRequest("encoded pandas object: truncated header or unsupported version")
    try:
        (size,) = _U32.unpack_from(view, 5)
        header = orjson.loads(view[9 : 9 + size])
        blocks = _split(view[9 + size :], header["sizes"])
        index = _decode_index(header["index"], blocks)
        if header["type"] == "Series":
            values = _decode_values(header["data"], blocks)
            series: pd.Series = pd.Series(values, index=index, name=header["name"], copy=False)
            return series
        if header["type"] != "DataFrame":
            raise BadRequest(f"encoded pandas object: unknown type {header['type']!r}")
        columns = _decode_index(header["columns"], blocks)
        arrays = [_decode_values(meta, blocks) for meta in header["data"]]
        frame: pd.DataFrame = pd.DataFrame(dict(enumerate(arrays)), index=index, copy=False)
        frame.columns = columns
        return frame
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadRequest(f"encoded pandas object: corrupt header or data: {exc!r}") from None


def _split(body: memoryview, sizes: list[int]) -> list[memoryview]:
    if sum(sizes) != len(body) or any(s < 0 for s in sizes):
        raise BadRequest(
            f"encoded pandas object: blocks hold {len(body)} bytes, header says {sum(sizes)}"
        )
    out, pos = [], 0
    for s in sizes:
        out.append(body[pos : pos + s])
        pos += s
    out.reverse()  # consumed with pop(), in the order they were written
    return out


def _encode_index(index: pd.Index, blocks: list[bytes]) -> dict[str, Any]:
    import pandas as pd

    if isinstance(index, pd.MultiIndex):
        raise TypeError("encode_pandas does not support a MultiIndex (use encode_pickle)")
    name = _json_name(index.name, "index name")
    if isinstance(index, pd.RangeIndex):
        return {"enc": "range", "range": [index.start, index.stop, index.step], "name": name}
    meta = {**_encode_values(index, blocks), "name": name}
    freq = getattr(index, "freqstr", None)  # date_range / timedelta_range keep a frequency
    if freq is not None:
        meta["freq"] = freq
    return meta


def _decode_index(meta: dict[str, Any], blocks: list[memoryview]) -> pd.Index:
    import pandas as pd

    if meta["enc"] == "range":
        # The encoder writes [start, stop, step]; cast (not unpack) so that a corrupt header
        # fails in RangeIndex exactly as before.
        start_stop_step = cast("tuple[int, int, int]", meta["range"])
        range_index: pd.RangeIndex = pd.RangeIndex(*start_stop_step, name=meta["name"])
        return range_index
    index: pd.Index = pd.Index(_decode_values(meta, blocks), name=meta["name"], copy=False)
    if meta.get("freq") is not None:
        maker = pd.DatetimeIndex if isinstance(index, pd.DatetimeIndex) else pd.TimedeltaIndex
        index = maker(index, freq=meta["freq"])
    return index


def _encode_values(values: pd.Series | pd.Index, blocks: list[bytes]) -> dict[str, Any]:
    """Describe one column (or index) and append its blocks."""
    import pandas as pd

    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cat = pd.Categorical(values)
        blocks.append(encode_numpy(cat.codes))
        categories = _encode_values(cat.categories, blocks)
        return {"enc": "category", "categories": categories, "ordered": bool(dtype.ordered)}
    if isinstance(dtype, pd.DatetimeTZDtype):
        blocks.append(encode_numpy(pd.DatetimeIndex(values).asi8))
        return {"enc": "datetimetz", "unit": dtype.unit, "tz": str(dtype.tz)}
    if isinstance(dtype, np.dtype) and dtype.kind in "mM":
        blocks.append(encode_numpy(values.to_numpy().view(np.int64)))
        return {"enc": "datetime", "dtype": dtype.str}
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        blocks.append(encode_numpy(values.to_numpy()))
        return {"enc": "numpy"}
    mask = np.asarray(pd.isna(values), dtype=bool)
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    if numpy_dtype is not None and numpy_dtype.kind in "biuf":  # Int64, boolean, Float64
        filled = values.to_numpy(dtype=numpy_dtype, na_value=numpy_dtype.type(0))
        blocks += [encode_numpy(mask), encode_numpy(filled)]
        return {"enc": "masked", "dtype": str(dtype)}
    present = np.asarray(values.to_numpy(dtype=object)[~mask], dtype=object)
    try:
        encoded = encode_numpy(present)
    except TypeError as exc:
        raise TypeError(f"cannot encode {_label(values)}: {exc}") from None
    blocks += [encode_numpy(mask), encoded]
    return {"enc": "objects", "dtype": str(dtype)}


def _decode_values(meta: dict[str, Any], blocks: list[memoryview]) -> Any:
    import pandas as pd

    enc = meta["enc"]
    if enc == "numpy":
        return decode_numpy(blocks.pop())
    if enc == "datetime":
        return decode_numpy(blocks.pop()).view(np.dtype(meta["dtype"]))
    if enc == "datetimetz":
        ticks = decode_numpy(blocks.pop()).view(f"datetime64[{meta['unit']}]")
        return pd.DatetimeIndex(ticks).tz_localize("UTC").tz_convert(meta["tz"]).array
    if enc == "category":
        codes = decode_numpy(blocks.pop())
        categories = _decode_values(meta["categories"], blocks)
        return pd.Categorical.from_codes(codes, categories=categories, ordered=meta["ordered"])
    mask = decode_numpy(blocks.pop())
    present = decode_numpy(blocks.pop())
    # Any: pandas-stubs' pd.array overloads don't accept np.dtype | ExtensionDtype.
    dtype: Any = pd.api.types.pandas_dtype(meta["dtype"])
    if enc == "masked":
        return _masked(present, mask, dtype)
    if enc != "objects":
        raise BadRequest(f"encoded pandas object: unknown column encoding {enc!r}")
    values = np.full(len(mask), None, dtype=object)
    values[~mask] = present
    return pd.array(values, dtype=dtype)


def _masked(present: np.ndarray, mask: np.ndarray, dtype: Any) -> Any:
    import pandas as pd

    array = pd.array(present, dtype=dtype)
    array[mask] = pd.NA
    return array


def _json_name(name: Any, what: str) -> Any:
    if isinstance(name, np.generic):
        name = name.item()
    if not isinstance(name, _JSON_NAMES):
        raise TypeError(f"encode_pandas: {what} {name!r} must be str, int, float, bool or None")
    return name


def _label(values: pd.Series | pd.Index) -> str:
    return f"column {values.name!r}" if values.name is not None else "values"
