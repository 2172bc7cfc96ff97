"""The default batch key: items that cannot be stacked together get different keys."""

from __future__ import annotations

import numpy as np

from servekit.batching.keys import shape_key


def test_arrays_are_keyed_by_shape_and_dtype() -> None:
    assert shape_key(np.ones(3)) == shape_key(np.zeros(3))
    assert shape_key(np.ones(3)) != shape_key(np.ones(2))
    assert shape_key(np.ones(3)) != shape_key(np.ones(3, np.float32))
    assert shape_key(np.ones((2, 3))[0]) == shape_key(np.ones(3))  # a row of a request


def test_dicts_are_keyed_by_their_arrays_names_shapes_and_dtypes() -> None:
    a = {"x": np.ones(3), "y": np.ones(1, np.int64)}
    assert shape_key(a) == shape_key({"x": np.zeros(3), "y": np.zeros(1, np.int64)})
    assert shape_key(a) != shape_key({"x": np.ones(4), "y": np.ones(1, np.int64)})
    assert shape_key(a) != shape_key({"x": np.ones(3), "z": np.ones(1, np.int64)})
    assert shape_key({"x": np.ones(3), "tag": "a"}) == shape_key({"x": np.ones(3), "tag": "b"})


def test_anything_else_batches_with_anything() -> None:
    assert shape_key(b"bytes") is None
    assert shape_key("text") is None
    assert shape_key(7) is None
    assert shape_key(np.float64(1.0)) is None  # a row of a 1-d request stacks with any other
