"""In queue mode, ``/api/predict/<model>`` serves both EAS protocols at the same URL.

A queue client (it always sends its consumer identity; a put may carry a query or a
``DataFrameProto`` body) enqueues; anything else, as a ``PredictClient`` sends, is answered
synchronously, as without ``--queue``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servekit.client import PredictClient, QueueClient, StringRequest
from servekit.server import App
from server.slow_models import Shout
from support.servers import LiveServer

SCRIPT = Path(__file__).with_name("eas_client_script.py")
AUTH = {"Authorization": "Bearer tok"}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    app = App([Shout()], queue_url=f"sqlite://{tmp_path / 'queues'}", token="tok")
    server = LiveServer(app).start()
    server.call(app.wait_loaded())
    yield server
    server.stop()


@pytest.fixture
def queues(live: LiveServer) -> Iterator[tuple[QueueClient, QueueClient]]:
    pair = (
        QueueClient(f"127.0.0.1:{live.port}", "shout"),
        QueueClient(f"127.0.0.1:{live.port}", "shout/sink"),
    )
    for client in pair:
        client.set_token("tok")
        client.init()
    yield pair
    for client in pair:
        client.close()


def length(queue: QueueClient) -> int:
    return int(queue.attributes()["stream.length"])


def test_predict_client_is_answered_at_once_and_queue_client_enqueues(
    live: LiveServer, queues: tuple[QueueClient, QueueClient]
) -> None:
    inputs, sink = queues
    with PredictClient(f"127.0.0.1:{live.port}", "shout") as predictor:
        predictor.set_token("tok")  # signed: Authorization EAS …, Content-MD5, Date
        predictor.init()
        assert predictor.predict(StringRequest(b"right now")).response_data == b"RIGHT NOW"
    assert length(inputs) == 0 and length(sink) == 0  # nothing went through the queue

    index, request_id = inputs.put(b"later")
    (answer,) = sink.get(request_id=request_id, timeout="10s")
    assert index >= 1 and answer.data == b"LATER" and answer.tags["status"] == "200"


def test_a_bare_post_predicts_and_a_queue_request_enqueues(
    live: LiveServer, queues: tuple[QueueClient, QueueClient]
) -> None:
    url = f"{live.url}/api/predict/shout"
    bare = httpx.post(url, content=b"bare", headers=AUTH)
    assert bare.status_code == 200 and bare.content == b"BARE"

    uid = {**AUTH, "X-EAS-QueueService-Redis-Uid": "me"}
    gid = {**AUTH, "X-EAS-QueueService-Redis-Gid": "eas"}
    for headers, query in ((uid, {}), (gid, {}), (AUTH, {"requestId": "by-query"})):
        put = httpx.post(url, content=b"queued", headers=headers, params=query)
        assert put.status_code == 200 and put.text.isdigit(), put.text
        assert put.headers["X-Eas-Queueservice-Request-Id"]
    _, sink = queues
    assert sink.get(request_id="by-query", timeout="10s")[0].data == b"QUEUED"

    # a sink is no model: a bare POST there is still a put
    to_sink = httpx.post(f"{url}/sink", content=b"note", headers=AUTH)
    assert to_sink.status_code == 200 and to_sink.text.isdigit()


def test_a_bare_post_to_an_unknown_name_is_a_404_naming_the_queues(live: LiveServer) -> None:
    reply = httpx.post(f"{live.url}/api/predict/nosuch", content=b"x", headers=AUTH)
    assert reply.status_code == 404 and "shout/sink" in reply.json()["error"]


def test_published_sdk_predict_and_queue_clients_work_in_queue_mode(
    eas_sdk_python: str, live: LiveServer
) -> None:
    endpoint = f"127.0.0.1:{live.port}"
    sync = subprocess.run(
        [eas_sdk_python, str(SCRIPT), endpoint, "shout", "string", "tok"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(sync.stdout.strip().splitlines()[-1]) == {"body": "HELLO SERVEKIT"}

    queued = subprocess.run(
        [eas_sdk_python, "-c", SDK_QUEUE_SCRIPT, endpoint],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert queued.returncode == 0, queued.stderr
    assert queued.stdout.strip().splitlines()[-1] == "b'VIA THE SDK QUEUE' 200"


SDK_QUEUE_SCRIPT = """
import sys
from eas_prediction import QueueClient

def client(name):
    c = QueueClient(sys.argv[1], name)
    c.set_token("tok")
    c.init()
    c.set_timeout(20000)
    return c

inputs, sink = client("shout"), client("shout/sink")
index, request_id = inputs.put(b"via the sdk queue")
answer = sink.get(request_id=request_id, timeout="10s")[0]
print(answer.data, answer.tags["status"])
"""
