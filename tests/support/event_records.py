"""Reading what the bus wrote to a JSON-lines file sink, for the rlog and metrics tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

PYRAISDK_ENV = (
    "EVENTHUB_NAMESPACE",
    "SERVICEBUS_ENDPOINT_SUFFIX",
    "UAI_CLIENT_ID",
    "EVENTHUB_CONN_STRING",
    "EVENTHUB_AUX_STRUCTURED",
    "EVENTHUB_AUX_UNSTRUCTURED",
    "ENDPOINT_NAME",
    "MODEL_NAME",
    "ENDPOINT_VERSION",
    "SERVEKIT_EVENTS_URL",
)
STRUCTURED_FIELDS = {
    "Key",
    "Role",
    "Instance",
    "CorrelationId",
    "Element",
    "Code",
    "Numeric",
    "Detail",
    "Timestamp",
}
UNSTRUCTURED_FIELDS = {
    "Level",
    "Role",
    "Instance",
    "Context",
    "Message",
    "CorrelationId",
    "Element",
    "Timestamp",
}


def lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a file sink: ``{"stream", "key", "value"}``."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def values(path: Path, stream: str) -> list[dict[str, Any]]:
    """The records written to ``stream``, in order."""
    return [line["value"] for line in lines(path) if line["stream"] == stream]
