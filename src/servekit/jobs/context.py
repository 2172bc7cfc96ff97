"""``Context``: what a pipeline's ``__init__``, train, predict and inference methods get, and
``ContextKey``, the names ``ctx.get`` takes (dubhe-sdk's values)."""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from servekit.jobs.job import Job, JobCancelled
from servekit.jobs.logs import JobLog
from servekit.jobs.messages import Emitter, result_details

__all__ = ["Context", "ContextKey", "model_file_name", "time_stamp"]


class ContextKey:
    """Keys of :meth:`Context.get`: ``KEY_*`` come with the request, ``ENV_*`` from the
    environment (a request field of the same name wins)."""

    KEY_ALGORITHM_ID: Final = "algorithm_id"
    KEY_DATA_PATHS: Final = "data_paths"
    KEY_CODE_LIST: Final = "code_list"
    KEY_VERIFY_WAY: Final = "verify_way"
    KEY_VERIFY_PATHS: Final = "verify_paths"
    KEY_SPLIT_RATE: Final = "split_rate"
    KEY_PRETRAINED_MODEL_PATH: Final = "pretrained_model_path"
    KEY_PRETRAINED_EPOCH: Final = "pretrained_epoch"
    KEY_TMP_DIR: Final = "tmp_dir"
    KEY_OUTPUT_DIR: Final = "output_dir"
    KEY_IMAGE_BASE_DIR: Final = "image_base_dir"
    KEY_IMAGE_NAMES: Final = "image_names"
    KEY_RESOURCE_ALLOCATION: Final = "resource_allocation"
    ENV_INSTANCE_ID: Final = "INSTANCE_ID"
    ENV_PLATFORM_TYPE: Final = "PLATFORM_TYPE"
    ENV_RELY_MODEL_DATA: Final = "RELY_MODEL_DATA"
    ENV_MODEL_PATH: Final = "model_path"
    ENV_SPECIAL_PARAMS: Final = "special_params"


_JSON_ENV = frozenset({ContextKey.ENV_RELY_MODEL_DATA, ContextKey.ENV_SPECIAL_PARAMS})


def time_stamp(now: float | None = None) -> str:
    """dubhe's millisecond time stamp: ``YYYYmmddHHMMSS`` and 3 digits of milliseconds."""
    moment = datetime.fromtimestamp(time.time() if now is None else now)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def model_file_name(epoch: int, loss: float, suffix: str = "pth", now: float | None = None) -> str:
    """``model_<ms time stamp>_<epoch>_<loss>.<suffix>``, the name the platform expects."""
    return f"model_{time_stamp(now)}_{int(epoch)}_{float(loss):.2f}.{suffix.lstrip('.')}"


class Context:
    """One request's (or one job's) view: its parameters, folders, log and messages.

    Each job gets its own context; ``KEY_OUTPUT_DIR`` and ``KEY_TMP_DIR`` are the job's own
    folders. Progress and result calls publish platform messages (not for online inference,
    like dubhe-sdk) and raise :class:`JobCancelled` once the job is cancelled.
    """

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        folders: Mapping[str, str] | None = None,
        emitter: Emitter | None = None,
        job: Job | None = None,
        log: JobLog | None = None,
        publish_results: bool = True,
    ) -> None:
        self.json_request: dict[str, Any] = dict(params or {})
        self._folders = dict(folders or {})
        self._emitter = emitter
        self._job = job
        self._log = log or JobLog(None)
        self._publish_results = publish_results and emitter is not None
        self.last_model_file: str | None = None

    # ------------------------------------------------------------------ parameters
    def get(self, key: str, default: Any = "") -> Any:
        """``key`` from the job's folders, the request's parameters, then the environment."""
        if key in self._folders:
            return self._folders[key]
        if key in self.json_request:
            return self.json_request[key]
        raw = os.environ.get(key)
        if raw is None:
            return default
        if key in _JSON_ENV and raw.strip():
            try:
                return json.loads(raw)
            except ValueError:
                raise ValueError(f"environment variable {key} is not JSON: {raw[:80]!r}") from None
        if key == ContextKey.ENV_PLATFORM_TYPE and raw.strip().lstrip("-").isdigit():
            return int(raw)
        return raw

    @property
    def job_id(self) -> str | None:
        """The job's id (``None`` in ``__init__`` and online inference)."""
        return None if self._job is None else self._job.id

    @property
    def cancelled(self) -> bool:
        """Whether the job was asked to stop (``DELETE /jobs/{id}``)."""
        return self._job is not None and self._job.cancelled

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job was asked to stop."""
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def model_file(self, epoch: int, loss: float, suffix: str = "pth") -> str:
        """Where to save this epoch's model: ``KEY_OUTPUT_DIR``/:func:`model_file_name`.

        The folder is created; the job's END message reports the last of these that exists.
        """
        folder = Path(str(self.get(ContextKey.KEY_OUTPUT_DIR, "output/models")))
        folder.mkdir(parents=True, exist_ok=True)
        path = str(folder / model_file_name(epoch, loss, suffix))
        self.last_model_file = path
        return path

    # ------------------------------------------------------------------ logs and messages
    def log(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log ``msg`` (``%`` arguments as ``logging``) to the job's log and the service log."""
        self._log.info(msg, *args, **kwargs)

    def logProgress(self, progress: float) -> None:
        """Report progress alone (0 … 1)."""
        self.check_cancelled()
        value = _progress("logProgress", progress)
        self._log.info("Progress:%s, ", f"{value:.2%}")
        self._record(value, None, None)
        self._progress({"progress": value})

    def logProgressByEpoch(self, epoch: int, progress: float, Metrics: Mapping[str, Any]) -> None:
        """Report an epoch's progress (0 … 1) and metrics (name → number)."""
        self.check_cancelled()
        epoch = _int("logProgressByEpoch", "epoch", epoch)
        value = _progress("logProgressByEpoch", progress)
        metrics = _metrics("logProgressByEpoch", Metrics)
        self._log.info("Epoch:%d, Progress:%s, %s", epoch, f"{value:.2%}", _shown(metrics))
        self._record(value, epoch, metrics)
        self._progress({**metrics, "progress": value, "epoch": epoch})

    def logProgressByBatch(
        self,
        epoch: int,
        batch_idx: int,
        batchsize: int,
        progress: float,
        Metrics: Mapping[str, Any],
    ) -> None:
        """Report progress within an epoch: batch ``batch_idx`` of ``batchsize`` batches."""
        self.check_cancelled()
        epoch = _int("logProgressByBatch", "epoch", epoch)
        batch_idx = _int("logProgressByBatch", "batch_idx", batch_idx)
        batchsize = _int("logProgressByBatch", "batchsize", batchsize)
        value = _progress("logProgressByBatch", progress)
        metrics = _metrics("logProgressByBatch", Metrics)
        self._log.info(
            "Epoch:%d [%d|%d], Progress:%s, %s",
            epoch,
            batch_idx,
            batchsize,
            f"{value:.2%}",
            _shown(metrics),
        )
        self._record(value, epoch, metrics)
        data = {**metrics, "progress": value, "epoch": epoch}
        self._progress({**data, "batch_idx": batch_idx, "batch_count": batchsize})

    def logResult(self, predict_json: Any) -> None:
        """Send a result object as it is (RESULT message; only logged in online inference)."""
        self.check_cancelled()
        self._log.info("Result data:%s, ", predict_json)
        if self._publish_results and self._emitter is not None:
            self._emitter.result(self.job_id, predict_json)

    def logResultDetails(
        self,
        img_path: Any,
        ground_true: Any,
        predict_code: Any,
        conf: Any,
        shape_type: Any = None,
        position: Any = None,
        special: Any = None,
    ) -> list[dict[str, Any]]:
        """Send one image's prediction in the platform's shape, and return it."""
        self.check_cancelled()
        details = result_details(
            img_path, ground_true, predict_code, conf, shape_type, position, special
        )
        self._log.info("Result data:%s, ", details)
        if self._publish_results and self._emitter is not None:
            self._emitter.result(self.job_id, details)
        return details

    def _record(self, progress: float, epoch: int | None, metrics: dict[str, Any] | None) -> None:
        if self._job is not None:
            self._job.record_progress(progress, epoch, metrics)

    def _progress(self, data: dict[str, Any]) -> None:
        if self._publish_results and self._emitter is not None:
            self._emitter.progress(self.job_id, data)


def _progress(method: str, progress: Any) -> float:
    if isinstance(progress, bool) or not isinstance(progress, numbers.Real):
        raise TypeError(f"{method}: progress must be a number in [0, 1], got {progress!r}")
    value = float(progress)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{method}: progress must be in [0, 1], got {progress!r}")
    return value


def _int(method: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{method}: {name} must be an integer, got {value!r}")
    return int(value)


def _metrics(method: str, metrics: Any) -> dict[str, Any]:
    """A copy of ``metrics`` (the caller's dict is never changed), each value a number."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{method}: Metrics must be a dict of name → number, got {metrics!r}")
    copied: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"{method}: metric {name!r} must be a number, got {type(value).__name__} {value!r}"
            )
        if isinstance(value, numbers.Integral):
            copied[str(name)] = int(value)
        else:  # NaN and infinities have no JSON: null
            number = float(value)
            copied[str(name)] = number if math.isfinite(number) else None
    return copied


def _shown(metrics: Mapping[str, Any]) -> str:
    return "".join(f"{name}: {value:>4}, " for name, value in metrics.items())
