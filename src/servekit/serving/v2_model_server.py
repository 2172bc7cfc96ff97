"""mlrun's ``V2ModelServer`` API, served by servekit's engine.

A subclass writes mlrun's hooks (``load``, ``predict(request)``, ``preprocess(request, op)``,
``validate(request, op)``, ``postprocess(response)``, ``explain(request)``, ``op_<name>(event)``);
servekit runs them behind its one batcher through :class:`servekit.serving.adapter.MlrunModel`,
the ``servekit.Model`` every V2ModelServer carries (:meth:`V2ModelServer.as_model`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from servekit.serving.adapter import MlrunModel
from servekit.settings import BatchSettings

PARAM_ENV_PREFIX = "SERVEKIT_PARAM_"
_REMOTE = ("store://", "s3://", "gs://", "gcs://", "az://", "v3io://", "http://", "https://")


def param_from_env(key: str, default: Any = None) -> Any:
    """``SERVEKIT_PARAM_<KEY>`` (key upper-cased, ``-``/``.`` as ``_``), else ``default``."""
    name = PARAM_ENV_PREFIX + key.upper().replace("-", "_").replace(".", "_")
    return os.environ.get(name, default)


class ServingContext:
    """What replaces mlrun's ``GraphContext``: a logger and the environment's parameters."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(f"servekit.serving.{name}")
        self.verbose = False

    def get_param(self, key: str, default: Any = None) -> Any:
        return param_from_env(key, default)


class LocalFile:
    """A file next to the model (an ``extra_data`` entry): mlrun's ``DataItem``, locally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = str(path)
        self.key = path.stem

    def local(self) -> str:
        return str(self.path)

    def get(self) -> bytes:
        return self.path.read_bytes()

    def as_df(self, **kwargs: Any) -> Any:
        """The file as a pandas DataFrame (csv, parquet, json) — pandas must be installed."""
        import pandas as pd

        suffix = self.path.suffix.lower()
        if suffix == ".parquet" or suffix == ".pq":
            return pd.read_parquet(self.path, **kwargs)
        if suffix == ".json":
            return pd.read_json(self.path, **kwargs)
        return pd.read_csv(self.path, **kwargs)

    def __repr__(self) -> str:
        return f"LocalFile({str(self.path)!r})"


def find_model_file(model_path: str | None, suffix: str = "") -> tuple[str, dict[str, LocalFile]]:
    """``model_path`` if it is a file, else the one file in that folder ending with ``suffix``;
    with the folder's other files keyed by name without extension (full name on a clash)."""
    if not model_path:
        raise ValueError("get_model() needs model_path (a local model file or folder)")
    if model_path.startswith(_REMOTE):
        raise ValueError(
            f"model_path {model_path!r} is not local: servekit reads models from the local"
            " filesystem only (download or mount the artifact first)"
        )
    path = Path(model_path)
    if path.is_file():
        return str(path), {}
    if not path.is_dir():
        raise FileNotFoundError(f"model_path {model_path!r}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file())
    matches = [p for p in files if p.name.endswith(suffix)] if suffix else files
    if len(matches) != 1:
        names = ", ".join(p.name for p in files) or "none"
        which = f"ending with {suffix!r}" if suffix else "(no suffix given)"
        raise FileNotFoundError(
            f"model_path {model_path!r} holds {len(matches)} files {which}, expected exactly"
            f" one (files: {names})"
        )
    others = [p for p in files if p != matches[0]]
    stems = [p.stem for p in others]
    extra = {(p.stem if stems.count(p.stem) == 1 else p.name): LocalFile(p) for p in others}
    return str(matches[0]), extra


class V2ModelServer:
    """Base model serving class with mlrun's API (``mlrun.serving.V2ModelServer``).

    Implement ``load()`` (use :meth:`get_model`) and ``predict(request)``; optionally
    ``preprocess``, ``validate``, ``postprocess``, ``explain`` and ``op_<name>(event)`` routes.
    ``name="name:version"`` sets both. Keyword arguments are parameters (:meth:`get_param`),
    except servekit's batching settings (``max_batch_size``, ``max_latency_ms``,
    ``idle_batch_size``, ``max_queue_size``, ``instances``), also readable as class
    attributes. ``max_batch_size`` counts requests here; above 1, concurrent requests' rows
    are merged into one ``predict`` call (see docs/mlrun.md).
    """

    max_batch_size: int | None = None
    max_latency_ms: float | None = None
    idle_batch_size: int | None = None
    max_queue_size: int | None = None
    instances: int | None = None

    def __init__(
        self,
        context: Any = None,
        name: str | None = None,
        model_path: str | None = None,
        model: Any = None,
        protocol: str | None = None,
        input_path: str | None = None,
        result_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        full = name or type(self).__name__.lower()
        self.name, _, self.version = full.partition(":")
        self.context = context if context is not None else ServingContext(self.name)
        self.ready = False
        self.error: Any = ""
        self.protocol = protocol or "v2"
        self.model_path = model_path
        self.model_spec: Any = None
        self._input_path = input_path
        self._result_path = result_path
        batching = {k: kwargs.pop(k) for k in list(kwargs) if k in BatchSettings.model_fields}
        self._kwargs = kwargs
        self._params = kwargs
        self.labels: dict[str, Any] = {}
        self.model_endpoint_uid: str | None = None
        if model is not None:
            self.model = model
            self.ready = True
        self._servekit_model = MlrunModel(self, **batching)
        #: model-wide metrics (those set outside a batch), shared with the servekit model
        self.metrics: dict[str, Any] = self._servekit_model.metrics

    # ------------------------------------------------------------------ servekit side
    def as_model(self) -> MlrunModel:
        """The ``servekit.Model`` serving this instance (``App([server.as_model()])``)."""
        return self._servekit_model

    # ------------------------------------------------------------------ mlrun API
    def get_param(self, key: str, default: Any = None) -> Any:
        """A constructor keyword, else ``SERVEKIT_PARAM_<KEY>`` from the environment."""
        if key in self._params:
            return self._params[key]
        getter = getattr(self.context, "get_param", None)
        return param_from_env(key, default) if getter is None else getter(key, default)

    def set_metric(self, name: str, value: Any) -> None:
        """A metric for request records: per batch inside hooks, else model-wide."""
        self._servekit_model.set_metric(name, value)

    def get_model(self, suffix: str = "") -> tuple[str, dict[str, LocalFile]]:
        """``(model file, extra_data)`` from the local ``model_path`` (file or folder)."""
        return find_model_file(self.model_path, suffix)

    def load(self) -> None:
        """Load the model; see :meth:`get_model`."""
        if not self.ready and getattr(self, "model", None) is None:
            raise ValueError("please specify a load method or a model object")

    def validate(self, request: Any, operation: str) -> Any:
        """Check the request after preprocess (mlrun's checks for protocol v2)."""
        if self.protocol == "v2":
            if not isinstance(request, dict) or "inputs" not in request:
                raise Exception('Expected key "inputs" in request body')
            if not isinstance(request["inputs"], list):
                raise Exception('Expected "inputs" to be a list')
        return request

    def preprocess(self, request: Any, operation: str) -> Any:
        """Transform the request body before validate and predict."""
        return request

    def postprocess(self, request: Any) -> Any:
        """Transform the response before it is returned."""
        return request

    def predict(self, request: Any) -> Any:
        """The model's prediction for ``request["inputs"]``."""
        raise NotImplementedError()

    def explain(self, request: Any) -> Any:
        """The model's explanation for ``request["inputs"]``."""
        raise NotImplementedError()

    def logged_results(self, request: Any, response: Any, op: str) -> tuple[Any, Any]:
        """mlrun's monitoring hook; servekit's request log records the request as received."""
        return None, None
