"""Batch keys: items with different keys never share a batch.

The idea is Triton's ``enforce_equal_shape_tensors``: a model that stacks its batch
(``np.stack(batch)``) cannot take rows of different shapes together, so the batcher only
groups items whose key is equal. A key of ``None`` matches every other ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

BatchKey = Callable[[Any], Hashable]
"""Maps one item to its key; called once per item, on the batcher's event loop."""


def shape_key(item: Any) -> Hashable:
    """The default key: an array's ``(shape, dtype)``; a dict's arrays' ``(name, shape, dtype)``.

    Anything else is ``None``: such items batch with each other, whatever they hold.
    """
    if isinstance(item, np.ndarray):
        return (item.shape, item.dtype)
    if isinstance(item, dict):
        return tuple(
            (name, value.shape, value.dtype)
            for name, value in item.items()
            if isinstance(value, np.ndarray)
        )
    return None
