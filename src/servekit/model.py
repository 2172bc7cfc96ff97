"""``servekit.Model``: what a user subclasses to serve a model.

Lifecycle: ``load()`` (may be slow; the model is not ready until it returns) → ready → serve
→ drain. Per request ``validate(inputs)`` runs first; per batch, in the model's own thread,
``preprocess(item)`` → ``predict(batch)`` → ``postprocess(output)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from servekit.batching import BatchPolicy
from servekit.errors import BadRequest, ModelError

_BATCH_SETTINGS = (
    "max_batch_size",
    "max_latency_ms",
    "idle_batch_size",
    "max_queue_size",
    "instances",
)


class Model:
    """Base class for served models.

    Name and version come from ``Model(name="name:version")``, else the class attributes
    ``name`` / ``version``, else the class name in lower case. Batching settings may be class
    attributes or constructor keywords (``max_batch_size``, ``max_latency_ms``,
    ``idle_batch_size``, ``max_queue_size``, ``instances``); unset ones come from
    ``SERVEKIT_*`` environment variables, then defaults. Other keywords land in ``self.params``.
    """

    name: ClassVar[str | None] = None
    version: ClassVar[str | None] = None
    platform: ClassVar[str] = "servekit"
    #: Each row along the first axis is one batch item; False: the whole request is one item.
    batch_rows: ClassVar[bool] = True
    #: Body format on the PAI-EAS route ``/api/predict/{name}``: string, tensorflow, pytorch.
    eas_format: ClassVar[str] = "string"
    #: Tensor metadata for ``GET /v2/models/{name}``: dicts with name, datatype, shape.
    inputs: ClassVar[list[dict[str, Any]]] = []
    outputs: ClassVar[list[dict[str, Any]]] = []

    max_batch_size: int | None = None
    max_latency_ms: float | None = None
    idle_batch_size: int | None = None
    max_queue_size: int | None = None
    instances: int | None = None

    def __init__(self, name: str | None = None, **params: Any) -> None:
        full = name or type(self).name or type(self).__name__.lower()
        model_name, _, version = full.partition(":")
        if not model_name:
            raise ValueError(f"model name must not be empty (got {full!r})")
        self.name = model_name  # type: ignore[misc]
        self.version = version or type(self).version  # type: ignore[misc]
        for key in _BATCH_SETTINGS:
            if key in params:
                setattr(self, key, params.pop(key))
        self.params = params

    # ------------------------------------------------------------------ user hooks
    def load(self) -> None:
        """Load weights and anything slow; called once, in a thread, before serving."""

    def validate(self, inputs: dict[str, Any]) -> None:
        """Check a request's decoded inputs; raise ``BadRequest``/``ValueError`` to refuse it."""

    def preprocess(self, item: Any) -> Any:
        """Per item, in the model thread, just before ``predict``."""
        return item

    def predict(self, batch: list[Any]) -> list[Any]:
        """One output per item, in order (an ``Exception`` instance fails that item alone)."""
        raise NotImplementedError(f"{type(self).__name__}.predict is not implemented")

    def postprocess(self, output: Any) -> Any:
        """Per output, in the model thread, right after ``predict``."""
        return output

    def explain(self, batch: list[Any]) -> list[Any]:
        """Explanations, one per item; ``POST …/explain`` calls it (not batched across requests)."""
        raise NotImplementedError(f"model '{self.name}' has no explain()")

    # ------------------------------------------------------------------ servekit side
    @property
    def full_name(self) -> str:
        return f"{self.name}:{self.version}" if self.version else str(self.name)

    def batch_policy(self, **overrides: Any) -> BatchPolicy:
        """This model's batching settings: overrides, then attributes, then env, then defaults."""
        latency_ms = overrides.pop("max_latency_ms", None) or self.max_latency_ms
        given: dict[str, Any] = {
            "max_batch_size": self.max_batch_size,
            "idle_batch_size": self.idle_batch_size,
            "max_queue_size": self.max_queue_size,
            "instances": self.instances,
            "max_latency": None if latency_ms is None else latency_ms / 1000.0,
        }
        given.update({k: v for k, v in overrides.items() if v is not None})
        return BatchPolicy.resolve(**given)

    def operations(self) -> dict[str, Any]:
        """Custom operations: methods named ``op_<name>``, served at ``POST …/{name}``."""
        return {
            attr[3:]: getattr(self, attr)
            for attr in dir(type(self))
            if attr.startswith("op_") and callable(getattr(self, attr))
        }

    def run_batch(self, batch: list[Any]) -> list[Any]:
        """preprocess → predict → postprocess, isolating per-item hook failures."""
        cls = type(self)
        if cls.preprocess is not Model.preprocess:
            batch = [isolate(self.preprocess, item) for item in batch]
        if any(isinstance(item, BaseException) for item in batch):
            live = [item for item in batch if not isinstance(item, BaseException)]
            predicted = list(self.predict(live)) if live else []
            if len(predicted) != len(live):
                raise ModelError(
                    f"model '{self.name}' returned {len(predicted)} results for a batch of"
                    f" {len(live)} items; predict must return exactly one result per item"
                )
            outputs = iter(predicted)
            outputs_list = [
                item if isinstance(item, BaseException) else next(outputs) for item in batch
            ]
        else:
            outputs_list = self.predict(batch)
        if cls.postprocess is not Model.postprocess:
            outputs_list = [
                out if isinstance(out, BaseException) else isolate(self.postprocess, out)
                for out in outputs_list
            ]
        return outputs_list


def isolate(hook: Any, value: Any) -> Any:
    """``hook(value)``, or the error as a value: bad-input errors become ``BadRequest``."""
    try:
        return hook(value)
    except (BadRequest, ValueError, TypeError, KeyError, IndexError) as exc:
        return BadRequest(f"{hook.__name__} rejected an item: {exc}")
    except Exception as exc:  # one item's hook failure must not fail its neighbours
        return exc
