"""Checks of the platform messages a job published."""

from __future__ import annotations

from typing import Any

STATUS, RESULT = "alg_model_progress", "als_model_result"
ENVELOPE = {"instance_id", "request_number", "date", "mes_type", "data", "job_id"}


def of_job(values: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [v for v in values if v.get("job_id") == job_id]


def check_envelopes(values: list[dict[str, Any]], instance_id: str = "") -> None:
    numbers = set()
    for value in values:
        assert set(value) == ENVELOPE, value
        assert value["instance_id"] == instance_id
        assert isinstance(value["date"], int) and value["date"] > 1_600_000_000_000
        numbers.add(value["request_number"])
    assert len(numbers) == len(values), "request_number is unique per message"


def kinds(values: list[dict[str, Any]]) -> list[str]:
    """Each message as READY/START/END:<status>/PROGRESS/RESULT, in order."""
    shown = []
    for value in values:
        data = value["data"]
        if value["mes_type"] in (0, 1):
            suffix = f":{data['status']}" if data["action"] == "END" else ""
            shown.append(data["action"] + suffix)
        else:
            shown.append({2: "PROGRESS", 3: "RESULT"}[value["mes_type"]])
    return shown


SUCCESS = ["START", "PROGRESS", "PROGRESS", "PROGRESS", "RESULT", "RESULT", "END:200"]
FAILURE = ["START", "PROGRESS", "PROGRESS", "END:300"]
CANCELLED = ["START", "PROGRESS", "END:300"]
