"""dubhe-sdk's platform messages: the envelope, its ``mes_type`` values and the ``data`` of
READY, START, END, PROGRESS and RESULT, published on the event bus.

Every message is ``{"instance_id", "request_number", "date", "mes_type", "data", "job_id"}``:
``request_number`` a unique message number (dubhe: ``uuid1().int >> 64``), ``date`` Unix
milliseconds. READY, START, END and PROGRESS go to the status topic, RESULT to the result
topic. Messages are keyed by the instance id, so a partitioned topic keeps them in order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any

__all__ = ["Emitter", "MesType", "Publish", "envelope", "result_details"]

Publish = Callable[[str, Mapping[str, Any]], None]


class MesType(IntEnum):
    """dubhe's ``mes_type``."""

    READY = 0
    STATUS = 1
    PROGRESS = 2
    RESULT = 3


OK, FAILED = 200, 300
_WORDS = {1: "train", 2: "predict", 3: "inference"}


def envelope(instance_id: str, mes_type: MesType, data: Any, job_id: str | None) -> dict[str, Any]:
    """One platform message around ``data``."""
    return {
        "instance_id": instance_id,
        "request_number": uuid.uuid1().int >> 64,
        "date": int(time.time() * 1000),
        "mes_type": int(mes_type),
        "data": data,
        "job_id": job_id,
    }


def result_details(
    img_path: Any,
    ground_true: Any,
    predict_code: Any,
    conf: Any,
    shape_type: Any = None,
    position: Any = None,
    special: Any = None,
) -> list[dict[str, Any]]:
    """dubhe's RESULT body: ``[{"img_path", "info": [...]}]``, one info per box.

    ``position`` is a list of boxes ``(x1, y1, x2, y2, box_conf)``; each becomes
    ``{"position": [[x1, y1], [x2, y2]], …}`` (a negative ``conf`` takes the box's own).
    """
    base = {"ground_true": ground_true, "predict_code": predict_code, "conf": conf}
    result: dict[str, Any] = {"img_path": img_path}
    if position:
        info = []
        for box in position:
            if len(box) != 5:
                raise ValueError(
                    f"logResultDetails: each position must be (x1, y1, x2, y2, conf), got {box!r}"
                )
            x1, y1, x2, y2, box_conf = box
            info.append(
                {
                    **base,
                    "conf": box_conf if _negative(conf) else conf,
                    "shape_type": shape_type,
                    "position": [[x1, y1], [x2, y2]],
                    "special": special,
                }
            )
        result["bbox_cnt"] = len(position)
    elif position is not None:  # an empty list: a shape without boxes
        conf = 1 if _negative(conf) else conf
        info = [
            {**base, "conf": conf, "shape_type": shape_type, "position": [], "special": special}
        ]
    else:
        info = [base]
    result["info"] = info
    return [result]


def _negative(value: Any) -> bool:
    return isinstance(value, (int, float)) and value < 0


class Emitter:
    """Publishes one service's platform messages through ``publish(topic, value)``."""

    def __init__(
        self, publish: Publish, *, instance_id: str, status_topic: str, result_topic: str
    ) -> None:
        self.publish = publish
        self.instance_id = instance_id
        self.status_topic = status_topic
        self.result_topic = result_topic

    def _send(self, topic: str, mes_type: MesType, data: Any, job_id: str | None) -> None:
        self.publish(topic, envelope(self.instance_id, mes_type, data, job_id))

    def ready(self) -> None:
        data = {"action": "READY", "status": OK, "msg": "model is ready"}
        self._send(self.status_topic, MesType.READY, data, None)

    def start(self, job_id: str, req_type: int) -> None:
        data = {"action": "START", "status": OK, "msg": f"model {_WORDS[req_type]} starting"}
        self._send(self.status_topic, MesType.STATUS, data, job_id)

    def end(self, job_id: str | None, data: Mapping[str, Any]) -> None:
        self._send(self.status_topic, MesType.STATUS, {"action": "END", **data}, job_id)

    def progress(self, job_id: str | None, data: Mapping[str, Any]) -> None:
        self._send(self.status_topic, MesType.PROGRESS, dict(data), job_id)

    def result(self, job_id: str | None, data: Any) -> None:
        self._send(self.result_topic, MesType.RESULT, data, job_id)


def end_ok(req_type: int, model_path: str | None) -> dict[str, Any]:
    """END of a job that returned."""
    data: dict[str, Any] = {"status": OK, "msg": f"model {_WORDS[req_type]} end"}
    if model_path is not None:
        data["model_path"] = model_path
    return data


def end_failed(instance_id: str, error: BaseException, trace: str) -> dict[str, Any]:
    """END of a job (or a service start) that raised: dubhe's message, the error, the trace."""
    text = f"{type(error).__name__}: {error}"
    return {
        "status": FAILED,
        "msg": f"{instance_id} current model error {error}",
        "error": text,
        "traceback": trace,
    }


def end_cancelled(job_id: str) -> dict[str, Any]:
    """END of a job cancelled on request."""
    return {"status": FAILED, "msg": f"job {job_id} cancelled", "cancelled": True}
