"""Request logging for model monitoring: each served request's inputs and outputs as records.

One :class:`RequestLog` per served model. At a request's end the runtime calls
:meth:`RequestLog.log`; it decides (mode, sampling; errors always), builds the records from
references (no copy, no encoding: the bus's sender thread encodes) and publishes them on the
request-log topic. Every message carries CloudEvents 1.0 attributes as headers and its value
is the data alone (binary mode: ``{"inputs"}`` for a request, ``{"status", "seconds",
"outputs" | "error", "metrics"}`` for a response); Kafka has them as message headers, the
file and stdout sinks write them as the line's ``headers``.

Modes: ``all`` (a request record and a response record sharing ``ce_id``), ``request``,
``response``. With ``batch`` N > 1, N records go in one message, mlrun's ``log_stream_batch``
shape: ``{"headers": COLUMNS, "values": [[…], …]}``, each row one record.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from servekit.events import publish
from servekit.events.engine import new_correlation_id

__all__ = ["COLUMNS", "MODES", "RequestLog", "ce_time"]

MODES = ("off", "all", "request", "response")
REQUEST_TYPE = "org.servekit.inference.request"
RESPONSE_TYPE = "org.servekit.inference.response"
BATCH_TYPE = "org.servekit.inference.batch"
#: the fields of a record, in the order of a batched message's rows
COLUMNS = (
    "id",
    "type",
    "time",
    "model",
    "version",
    "door",
    "correlation_id",
    "status",
    "seconds",
    "inputs",
    "outputs",
    "error",
    "metrics",
)

_second = -1
_second_text = ""


def ce_time(wall: float) -> str:
    """``wall`` (``time.time()``) as RFC 3339 in UTC with microseconds (cached per second)."""
    global _second, _second_text
    whole = int(wall)
    if whole != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = whole
    return f"{_second_text}.{int((wall - whole) * 1e6):06d}Z"


class RequestLog:
    """Publishes the records of one model's requests (see the module docstring)."""

    def __init__(
        self,
        model: str,
        version: str | None,
        *,
        mode: str = "all",
        topic: str = "servekit-requests",
        sample: float = 1.0,
        batch: int = 1,
        host: str | None = None,
    ) -> None:
        if mode not in MODES or mode == "off":
            raise ValueError(f"request log mode must be all, request or response, got {mode!r}")
        self.model = model
        self.version = version or ""
        self.topic = topic
        self.sample = sample
        self.batch = batch
        self.requests = mode in ("all", "request")
        self.responses = mode in ("all", "response")
        self.source = f"servekit://{host or socket.gethostname()}/{model}"
        self._static = (
            ("ce_specversion", "1.0"),
            ("ce_source", self.source),
            ("ce_model", model),
            ("ce_modelversion", self.version),
            ("content-type", "application/json"),
        )
        self._rows: list[list[Any]] = []
        self._lock = threading.Lock()

    def sampled(self, status: int) -> bool:
        """Whether this request is logged: errors (4xx/5xx) always, others at ``sample``."""
        sample = self.sample
        return status >= 400 or sample >= 1.0 or (sample > 0.0 and random.random() < sample)

    def log(
        self,
        *,
        door: str,
        corr_id: str,
        started: float,
        seconds: float,
        status: int,
        inputs: Any,
        outputs: Any,
        error: BaseException | None,
        metrics: dict[str, Any] | None,
    ) -> None:
        """Log one finished request (``started``: its ``time.time()`` at arrival)."""
        if not self.sampled(status):
            return
        ce_id = new_correlation_id()
        version = self.version
        if self.batch > 1:
            if self.requests:
                self._add([ce_id, REQUEST_TYPE, ce_time(started), self.model, version, door,
                           corr_id, None, None, inputs, None, None, None])  # fmt: skip
            if self.responses:
                self._add([ce_id, RESPONSE_TYPE, ce_time(started + seconds), self.model,
                           version, door, corr_id, status, seconds, None, outputs,
                           _text(error), metrics])  # fmt: skip
            return
        # binary mode: the value is the data; the attributes (id, type, time, model, door,
        # correlation id) travel once, as headers
        if self.requests:
            self._send({"inputs": inputs}, ce_id, REQUEST_TYPE, ce_time(started), door, corr_id)
        if self.responses:
            data: dict[str, Any] = {"status": status, "seconds": seconds}
            if error is None:
                data["outputs"] = outputs
            else:
                data["error"] = _text(error)
            if metrics:
                data["metrics"] = metrics
            self._send(data, ce_id, RESPONSE_TYPE, ce_time(started + seconds), door, corr_id)

    def _send(
        self, data: dict[str, Any], ce_id: str, kind: str, when: str, door: str, corr_id: str
    ) -> None:
        headers = (
            *self._static,
            ("ce_id", ce_id),
            ("ce_type", kind),
            ("ce_time", when),
            ("ce_door", door),
            ("ce_correlationid", corr_id),
        )
        # keyed by ce_id: a request's two records stay in order on one partition
        publish(self.topic, data, key=ce_id, headers=headers)

    def _add(self, row: list[Any]) -> None:
        with self._lock:
            self._rows.append(row)
            if len(self._rows) < self.batch:
                return
            rows, self._rows = self._rows, []
        self._send_rows(rows)

    def _send_rows(self, rows: Sequence[list[Any]]) -> None:
        headers = (
            *self._static,
            ("ce_id", new_correlation_id()),
            ("ce_type", BATCH_TYPE),
            ("ce_time", ce_time(time.time())),
        )
        publish(self.topic, {"headers": COLUMNS, "values": rows}, headers=headers)

    def flush(self) -> None:
        """Publish the records of a batch not yet full (at shutdown)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            self._send_rows(rows)


def _text(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"
