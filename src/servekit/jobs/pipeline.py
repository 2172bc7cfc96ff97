"""The decorators (``@pipeline()``, ``@train()``, ``@predict()``, ``@inference()``) and how a
service finds its entrances: which method of which pipeline class answers each ``req_type``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar, overload

__all__ = ["Entrance", "entrances", "find_pipelines", "inference", "pipeline", "predict", "train"]

T = TypeVar("T")
TRAIN, PREDICT, INFERENCE = 1, 2, 3
# dubhe-sdk's marker attributes, so code that looks for them still finds them
_MARKS = {TRAIN: "_is_train_func", PREDICT: "_is_predict_func", INFERENCE: "_is_inference_func"}
PIPELINE_MARK = "_is_pipeline_func"
_registered: list[type] = []


@overload
def pipeline(cls: None = None) -> Callable[[type[T]], type[T]]: ...
@overload
def pipeline(cls: type[T]) -> type[T]: ...
def pipeline(cls: type[T] | None = None) -> Any:
    """Mark a class whose ``__init__(self, ctx)`` loads config and models as a pipeline."""

    def mark(target: type[T]) -> type[T]:
        if not inspect.isclass(target):
            raise TypeError(f"@pipeline() decorates a class, not {type(target).__name__}")
        setattr(target, PIPELINE_MARK, True)
        if target not in _registered:
            _registered.append(target)
        return target

    return mark if cls is None else mark(cls)


def _method_marker(req_type: int) -> Callable[[], Callable[[T], T]]:
    def decorator() -> Callable[[T], T]:
        def mark(function: T) -> T:
            setattr(function, _MARKS[req_type], True)
            return function

        return mark

    return decorator


train = _method_marker(TRAIN)
train.__doc__ = "Mark the method ``(self, ctx)`` that trains (``req_type`` 1, a background job)."
predict = _method_marker(PREDICT)
predict.__doc__ = "Mark the offline-evaluation method (``req_type`` 2, a background job)."
inference = _method_marker(INFERENCE)
inference.__doc__ = "Mark the online-inference method (``req_type`` 3, answered at once)."


@dataclass(frozen=True)
class Entrance:
    """``method`` of pipeline class ``cls`` answers ``req_type``."""

    cls: type
    method: str
    req_type: int


def registered() -> list[type]:
    """Every class decorated with ``@pipeline()`` so far, in order."""
    return list(_registered)


def find_pipelines(module: ModuleType) -> list[type]:
    """The pipeline classes defined in (or imported into) ``module``."""
    found = []
    for name in dir(module):
        obj = getattr(module, name)
        if inspect.isclass(obj) and getattr(obj, PIPELINE_MARK, False) and obj not in found:
            found.append(obj)
    return found


def entrances(pipelines: Iterable[type], task_type: int | None = None) -> dict[int, Entrance]:
    """The entrance of each ``req_type`` over ``pipelines``.

    With ``task_type`` (from ``INSTANCE_ID``) and a pipeline serving it, only that one is kept,
    as dubhe-sdk does: a training pod does not load the evaluation pipeline's model.
    """
    found: dict[int, Entrance] = {}
    for cls in pipelines:
        for name, function in inspect.getmembers(cls, inspect.isfunction):
            for req_type, mark in _MARKS.items():
                if not getattr(function, mark, False):
                    continue
                if req_type in found:
                    other = found[req_type]
                    raise TypeError(
                        f"two methods serve req_type {req_type}: {other.cls.__name__}."
                        f"{other.method} and {cls.__name__}.{name}; keep one"
                    )
                found[req_type] = Entrance(cls, name, req_type)
    if not found:
        names = ", ".join(c.__name__ for c in pipelines) or "none"
        raise TypeError(
            f"no @train(), @predict() or @inference() method in the pipelines ({names})"
        )
    if task_type in found:  # only the classes serving the pod's task are loaded
        chosen = found[task_type].cls
        return {kind: e for kind, e in found.items() if e.cls is chosen}
    return found
