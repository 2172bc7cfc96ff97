"""``servekit.Model``: what a user subclasses to serve a model.

Lifecycle: ``load()`` (may be slow; the model is not ready until it returns) → ready → serve
→ drain. Per request ``validate(inputs)`` runs first; per batch, in the model's own thread,
``preprocess(item)`` → ``predict(batch)`` → ``postprocess(output)``. An ``async def predict``
runs the same hooks on the event loop instead, with no thread hop (batched the same way).
"""

from __future__ import annotations

import difflib
import inspect
import threading
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from servekit.errors import BadRequest, ModelError

if TYPE_CHECKING:
    from servekit.batching import BatchPolicy
    from servekit.settings import BatchSettings


class _BatchContext(threading.local):
    """What one model thread's current batch recorded: metrics set, preprocess seconds."""

    model: Model | None = None
    metrics: dict[str, Any] | None = None
    preprocess: float | None = None


#: per model thread; read by the runtime right after each batch (in the same thread)
batch_context = _BatchContext()

# Other spellings of the latency knob (other systems' names, other units): refused with a hint.
_LATENCY_SPELLINGS = frozenset(
    {"max_latency", "max_batch_interval", "max_time_on_queue", "max_latency_s", "latency_ms"}
)


class Model:
    """Base class for served models.

    Name and version come from ``Model(name="name:version")``, else the class attributes
    ``name`` / ``version``, else the class name in lower case. Batching settings may be class
    attributes or constructor keywords (``max_batch_size``, ``max_latency_ms``,
    ``idle_batch_size``, ``max_queue_size``, ``instances``, ``dispatch``, ``inline``; see
    ``servekit.settings``); unset ones come from ``SERVEKIT_*`` environment variables, then
    defaults. Other keywords land in ``self.params``, except near-misses of a batching
    setting, which are a ``TypeError``.
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
    dispatch: str | None = None
    inline: str | bool | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The batcher runs an `async def` handler on the loop: give it one when predict is
        # `async def` (unless the class brings its own run_batch).
        if cls.run_batch in (Model.run_batch, Model.run_batch_async):
            asynchronous = inspect.iscoroutinefunction(cls.predict)
            runner = Model.run_batch_async if asynchronous else Model.run_batch
            cls.run_batch = runner  # type: ignore[assignment,method-assign]

    def __init__(self, name: str | None = None, **params: Any) -> None:
        full = name or type(self).name or type(self).__name__.lower()
        model_name, _, version = full.partition(":")
        if not model_name:
            raise ValueError(f"model name must not be empty (got {full!r})")
        self.name = model_name  # type: ignore[misc]
        self.version = version or type(self).version  # type: ignore[misc]
        self.params = _take_batch_settings(self, params)
        #: metrics set outside a batch: they travel with every later request record
        self.metrics: dict[str, Any] = {}

    # ------------------------------------------------------------------ user hooks
    def load(self) -> None:
        """Load weights and anything slow; called once, in a thread, before serving."""

    def validate(self, inputs: dict[str, Any]) -> None:
        """Check a request's decoded inputs; raise ``BadRequest``/``ValueError`` to refuse it."""

    def preprocess(self, item: Any) -> Any:
        """Per item, in the model thread, just before ``predict``."""
        return item

    def predict(self, batch: list[Any]) -> list[Any] | Awaitable[list[Any]]:
        """One output per item, in order (an ``Exception`` instance fails that item alone).

        May be ``async def``: then it runs on the event loop, where it must await, not block.
        """
        raise NotImplementedError(f"{type(self).__name__}.predict is not implemented")

    def postprocess(self, output: Any) -> Any:
        """Per output, in the model thread, right after ``predict``."""
        return output

    def explain(self, batch: list[Any]) -> list[Any]:
        """Explanations, one per item; ``POST …/explain`` calls it (not batched across requests)."""
        raise NotImplementedError(f"model '{self.name}' has no explain()")

    def set_metric(self, name: str, value: Any) -> None:
        """Attach a metric to the request records of model monitoring (request logging).

        Called from ``preprocess``/``predict``/``postprocess`` (in the model thread), it
        attaches to every request whose items are in the batch being run: batching merges
        requests, so a per-batch value is what the model can know. Called anywhere else
        (``load``, ``validate``, another thread), it is a model-wide metric that travels with
        every later record until set again (mlrun's ``set_metric``).
        """
        context = batch_context
        if context.metrics is not None and context.model is self:
            context.metrics[name] = value
        else:
            self.metrics[name] = value

    # ------------------------------------------------------------------ servekit side
    @property
    def full_name(self) -> str:
        return f"{self.name}:{self.version}" if self.version else str(self.name)

    def batch_settings(self, **overrides: Any) -> BatchSettings:
        """Overrides, then attributes, then ``SERVEKIT_*`` env, then defaults (``None``: unset)."""
        from servekit.settings import BatchSettings, InvalidSetting

        given = {name: getattr(self, name) for name in BatchSettings.model_fields}
        given.update(overrides)
        try:
            return BatchSettings(**{k: v for k, v in given.items() if v is not None})
        except InvalidSetting as exc:
            raise InvalidSetting(f"model '{self.full_name}': {exc}") from None

    def batch_policy(self, **overrides: Any) -> BatchPolicy:
        """What this model's batcher consumes: :meth:`batch_settings`, latency in seconds."""
        return self.batch_settings(**overrides).policy()

    def operations(self) -> dict[str, Any]:
        """Custom operations: methods named ``op_<name>``, served at ``POST …/{name}``."""
        return {
            attr[3:]: getattr(self, attr)
            for attr in dir(type(self))
            if attr.startswith("op_") and callable(getattr(self, attr))
        }

    def _outputs(self, outputs: Any, count: int) -> list[Any]:
        return _listed(outputs, str(self.name), count)

    def run_batch(self, batch: list[Any]) -> list[Any]:
        """preprocess → predict → postprocess, isolating per-item hook failures."""
        batch, live = self._preprocessed(batch)
        return self._completed(batch, live, self.predict(live) if live else [])

    async def run_batch_async(self, batch: list[Any]) -> list[Any]:
        """:meth:`run_batch` for an ``async def predict``, on the event loop."""
        batch, live = self._preprocessed(batch)
        predicted = await cast(Awaitable[list[Any]], self.predict(live)) if live else []
        return self._completed(batch, live, predicted)

    def _preprocessed(self, batch: list[Any]) -> tuple[list[Any], list[Any]]:
        """The batch after ``preprocess`` (failed items hold their error) and its live items."""
        context = batch_context
        context.model, context.metrics = self, {}
        if type(self).preprocess is not Model.preprocess:
            started = time.perf_counter()
            batch = [isolate(self.preprocess, item) for item in batch]
            context.preprocess = time.perf_counter() - started
        else:
            context.preprocess = None
        if any(isinstance(item, BaseException) for item in batch):
            return batch, [item for item in batch if not isinstance(item, BaseException)]
        return batch, batch

    def _completed(self, batch: list[Any], live: list[Any], predicted: Any) -> list[Any]:
        """``predict``'s outputs for ``live`` put back among the failed items, postprocessed."""
        if live is batch:
            outputs_list: list[Any] = predicted
        else:
            outputs = iter(self._outputs(predicted, len(live)) if live else [])
            outputs_list = [
                item if isinstance(item, BaseException) else next(outputs) for item in batch
            ]
        if type(self).postprocess is not Model.postprocess:
            outputs_list = self._outputs(outputs_list, len(batch))
            outputs_list = [
                out if isinstance(out, BaseException) else isolate(self.postprocess, out)
                for out in outputs_list
            ]
        return outputs_list


def _listed(outputs: Any, model: str, count: int) -> list[Any]:
    """``predict``'s return value as a list of ``count`` results, or a clear ``ModelError``."""
    try:
        listed = outputs if isinstance(outputs, list) else list(outputs)
    except TypeError:
        raise ModelError(
            f"model '{model}' predict returned {type(outputs).__name__}; it must return a list"
            f" with one result per item ({count} here)"
        ) from None
    if len(listed) != count:
        raise ModelError(
            f"model '{model}' returned {len(listed)} results for a batch of {count} items;"
            " predict must return exactly one result per item"
        )
    return listed


def isolate(hook: Any, value: Any) -> Any:
    """``hook(value)``, or the error as a value: bad-input errors become ``BadRequest``."""
    try:
        return hook(value)
    except (BadRequest, ValueError, TypeError, KeyError, IndexError) as exc:
        return BadRequest(f"{hook.__name__} rejected an item: {exc}")
    except Exception as exc:  # one item's hook failure must not fail its neighbours
        return exc


def _take_batch_settings(model: Model, params: dict[str, Any]) -> dict[str, Any]:
    """Set batching keywords on ``model``; return the rest, refusing near-misses of a setting."""
    from servekit.settings import BatchSettings

    settings = list(BatchSettings.model_fields)
    rest: dict[str, Any] = {}
    for key, value in params.items():
        if key in BatchSettings.model_fields:
            setattr(model, key, value)
            continue
        if key.lower() in _LATENCY_SPELLINGS:
            close = ["max_latency_ms (in milliseconds)"]
        else:
            close = difflib.get_close_matches(key.lower(), settings, n=1, cutoff=0.85)
        if close:
            raise TypeError(
                f"{type(model).__name__}() got {key}={value!r}, which is no batching setting:"
                f" did you mean {close[0]}? (settings: {', '.join(settings)})"
            )
        rest[key] = value
    return rest
