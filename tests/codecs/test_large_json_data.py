"""Large JSON ``data`` is converted a slice at a time (and, when the decoder owns the list,
consumed as it goes): same arrays and same kind of errors as the one-shot path."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servekit.codecs import tensors
from servekit.codecs.tensors import decode_tensor
from servekit.errors import BadRequest

values = st.one_of(
    st.integers(min_value=-300, max_value=70000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.sampled_from([None, "1", 2**40, 1e39]),
)
rows = st.lists(st.lists(values, min_size=2, max_size=2), min_size=2, max_size=12)
flat = st.lists(values, min_size=2, max_size=24)
datatypes = st.sampled_from(["FP32", "FP64", "FP16", "INT8", "UINT16", "INT64", "BOOL"])


def decode(spec: dict[str, Any], consume: bool = False) -> np.ndarray | str:
    try:
        return decode_tensor(spec, consume=consume)
    except BadRequest as exc:
        return f"BadRequest: {exc.message}"


@settings(max_examples=300, deadline=None)
@given(st.one_of(rows, flat), datatypes, st.booleans())
def test_sliced_conversion_matches_the_one_shot_path(data, datatype, consume):
    count = sum(len(r) if isinstance(r, list) else 1 for r in data)
    spec = {"name": "x", "datatype": datatype, "shape": [count], "data": data}
    whole = decode(copy.deepcopy(spec))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tensors, "CHUNK_ELEMENTS", 3)
        sliced = decode(spec, consume)
    if isinstance(whole, str):
        assert isinstance(sliced, str) and sliced.startswith("BadRequest: input 'x'")
    elif isinstance(sliced, str):
        # numpy folds booleans mixed among numbers into numbers (the one-shot path's known
        # leniency); a slice holding only booleans is checked exactly and refused
        assert "is a boolean, but" in sliced, sliced
    else:
        assert isinstance(sliced, np.ndarray), sliced
        assert sliced.dtype == whole.dtype
        np.testing.assert_array_equal(sliced, whole)


def test_consumed_data_is_emptied_and_unconsumed_is_kept():
    data = [[1, 2], [3, 4], [5, 6]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tensors, "CHUNK_ELEMENTS", 2)
        kept = decode_tensor({"name": "x", "datatype": "FP32", "shape": [3, 2], "data": data})
        assert data == [[1, 2], [3, 4], [5, 6]]
        spec = {"name": "x", "datatype": "FP32", "shape": [3, 2], "data": data}
        consumed = decode_tensor(spec, consume=True)
    assert data == []
    np.testing.assert_array_equal(kept, consumed)
    assert consumed.tolist() == [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2, 3, 4, 5], "shape [4] has 4 elements but data has 5"),
        ([1, 2, 3], "shape [4] has 4 elements but data has 3"),
        ([1, 2, "x", 4], "element 2 ('x') is a string, but FP32 needs numbers"),
        ([[1, 2], [None, 4]], "element 2 (None) is null, but FP32 needs numbers"),
    ],
)
def test_sliced_conversion_errors_name_the_element_and_the_count(data, message):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tensors, "CHUNK_ELEMENTS", 2)
        with pytest.raises(BadRequest) as info:
            decode_tensor(
                {"name": "x", "datatype": "FP32", "shape": [4], "data": data}, consume=True
            )
    assert info.value.message == f"input 'x': {message}"
