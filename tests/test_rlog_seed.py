"""pyraisdk's documented rlog examples, verbatim but for the import path, each run as a script.

The Azure settings the examples export cannot reach Azure here: ``SERVEKIT_EVENTS_URL`` names
a file instead (it wins over Event Hubs settings), and the records the script left in it at
exit are checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.event_records import PYRAISDK_ENV, STRUCTURED_FIELDS, UNSTRUCTURED_FIELDS, lines

EXAMPLE_MANAGED_IDENTITY = """
# export EVENTHUB_AUX_UNSTRUCTURED='ehunstruct'
# export EVENTHUB_AUX_STRUCTURED='ehstruct'
# export UAI_CLIENT_ID='xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx'
# export EVENTHUB_NAMESPACE='xxx.servicebus.windows.net'

from servekit import rlog
rlog.initialize()

rlog.infof('this is a info message %s', 123)
rlog.event('LifetimeEvent', 'STOP_GRACEFUL_SIGNAL', 0, 'detail info')
"""

EXAMPLE_CONNECTION_STRING = """
# export EVENTHUB_AUX_UNSTRUCTURED='ehunstruct'
# export EVENTHUB_AUX_STRUCTURED='ehstruct'
# export EVENTHUB_CONN_STRING='<connection string>'

from servekit import rlog
rlog.initialize()

rlog.infocf('corrid', -1, 'this is a info message: %s', 123)
rlog.event('RequestDuration', '200', 0.01, 'this is duration in seconds')
"""

EXAMPLE_ARGUMENTS = """
from servekit import rlog
rlog.initialize(eh_structured='ehstruct', eh_unstructured='ehunstruct', eh_conn_str='<eventhub-conn-str>')

rlog.errorcf('corrid', -1, Exception('error msg'), 'error message: %s %s', 1,2)
rlog.event('CpuUsage', '', 0.314, detail='cpu usage', corr_id='corrid', elem=-1)
"""  # noqa: E501 - the example's own line


def run_example(code: str, tmp_path: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    clean = {k: v for k, v in os.environ.items() if k not in PYRAISDK_ENV}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env, "SERVEKIT_EVENTS_URL": f"file://{path}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = lines(path)
    for line in found:
        fields = STRUCTURED_FIELDS if line["stream"] == "ehstruct" else UNSTRUCTURED_FIELDS
        assert set(line["value"]) == fields
        assert line["value"]["Role"] == "RemoteModel"
    return found


def shape(found: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    keep = ("Key", "Code", "Numeric", "Detail", "Level", "Message", "CorrelationId", "Element")
    return [
        (line["stream"], {k: line["value"][k] for k in keep if k in line["value"]})
        for line in found
    ]


def test_managed_identity_example(tmp_path: Path) -> None:
    env = {
        "EVENTHUB_AUX_UNSTRUCTURED": "ehunstruct",
        "EVENTHUB_AUX_STRUCTURED": "ehstruct",
        "UAI_CLIENT_ID": "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
        "EVENTHUB_NAMESPACE": "xxx.servicebus.windows.net",
    }
    found = run_example(EXAMPLE_MANAGED_IDENTITY, tmp_path, env)
    assert shape(found) == [
        (
            "ehunstruct",
            {
                "Level": "INFO",
                "Message": "this is a info message 123",
                "CorrelationId": "",
                "Element": -1,
            },
        ),
        (
            "ehstruct",
            {
                "Key": "LifetimeEvent",
                "Code": "STOP_GRACEFUL_SIGNAL",
                "Numeric": 0,
                "Detail": "detail info",
                "CorrelationId": "",
                "Element": -1,
            },
        ),
    ]


def test_connection_string_example(tmp_path: Path) -> None:
    env = {
        "EVENTHUB_AUX_UNSTRUCTURED": "ehunstruct",
        "EVENTHUB_AUX_STRUCTURED": "ehstruct",
        "EVENTHUB_CONN_STRING": "<connection string>",
    }
    found = run_example(EXAMPLE_CONNECTION_STRING, tmp_path, env)
    assert shape(found) == [
        (
            "ehunstruct",
            {
                "Level": "INFO",
                "Message": "this is a info message: 123",
                "CorrelationId": "corrid",
                "Element": -1,
            },
        ),
        (
            "ehstruct",
            {
                "Key": "RequestDuration",
                "Code": "200",
                "Numeric": 0.01,
                "Detail": "this is duration in seconds",
                "CorrelationId": "",
                "Element": -1,
            },
        ),
    ]


def test_arguments_example(tmp_path: Path) -> None:
    found = run_example(EXAMPLE_ARGUMENTS, tmp_path, {})
    assert shape(found) == [
        (
            "ehunstruct",
            {
                "Level": "ERROR",
                "Message": "error message: 1 2\nException: error msg",
                "CorrelationId": "corrid",
                "Element": -1,
            },
        ),
        (
            "ehstruct",
            {
                "Key": "CpuUsage",
                "Code": "",
                "Numeric": 0.314,
                "Detail": "cpu usage",
                "CorrelationId": "corrid",
                "Element": -1,
            },
        ),
    ]
    assert found[0]["value"]["Context"] == "__main__:5"
