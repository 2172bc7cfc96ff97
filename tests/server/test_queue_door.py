"""The EAS queue protocol door under uvicorn, driven by real HTTP and WebSocket clients."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from servekit.protocol.queue_wire import decode_frame, decode_list, encode_frame
from servekit.server.queue_door import DATAFRAME_MEDIA

UID = "X-EAS-QueueService-Redis-Uid"
GID = "X-EAS-QueueService-Redis-Gid"
RID = "X-Eas-Queueservice-Request-Id"


def put(base: str, data: bytes, **tags: str) -> tuple[int, str]:
    response = httpx.post(base, content=data, params=tags)
    assert response.status_code == 200, response.text
    return int(response.text), response.headers[RID]


def ws_url(base: str, **query: Any) -> str:
    return "ws" + str(httpx.URL(base, params={"_watch_": "true", **query}))[4:]


def test_post_puts_the_body_and_answers_index_and_request_id(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    first = put(base, b"hello", color="red")
    second = put(base, b"again")
    assert second[0] > first[0] >= 1 and first[1] != second[1]
    response = httpx.get(base, params={"_index_": first[0], "_auto_delete_": "false"})
    assert response.headers["content-type"] == "application/vnd.google.protobuf"
    (frame,) = decode_list(response.content)
    assert (frame.index, frame.data) == (first[0], b"hello")
    assert frame.tags == {"color": "red", "requestId": first[1]}


def test_get_by_length_deletes_unless_told_not_to(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    indexes = [put(base, f"r{i}".encode())[0] for i in range(4)]
    got = decode_list(httpx.get(base, params={"_index_": 0, "_length_": 3}).content)
    assert [f.index for f in got] == indexes[:3]
    left = decode_list(httpx.get(base, params={"_length_": 10, "_auto_delete_": "false"}).content)
    assert [f.index for f in left] == indexes[3:]


def test_get_by_request_id_waits_for_the_record(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc/sink"
    results: list[bytes] = []

    def getter() -> None:
        response = httpx.get(base, params={"requestId": "job-1", "_timeout_": "10s"}, timeout=15)
        results.append(response.content)

    thread = threading.Thread(target=getter)
    thread.start()
    put(base, b"not this one")
    index, rid = put(base, b"result", requestId="job-1")
    thread.join(15)
    assert rid == "job-1"
    (frame,) = decode_list(results[0])
    assert (frame.index, frame.data, frame.tags["requestId"]) == (index, b"result", "job-1")


def test_get_times_out_with_an_empty_list(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    response = httpx.get(base, params={"_timeout_": "100ms"})
    assert response.status_code == 200 and response.content == b""


def test_attributes_and_search_answer_json(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    indexes = [put(base, b"x")[0] for _ in range(3)]
    attrs = httpx.get(base, params={"_attrs_": "true"}).json()
    assert attrs["stream.length"] == "3" and attrs["stream.lastEntry"] == str(indexes[-1])
    found = httpx.get(base, params={"_search_": "true", "_index_": indexes[2]}).json()
    assert found == {"ConsumerId": "", "IsPending": False, "WaitCount": 2}
    missing = httpx.get(base, params={"_search_": "true", "_index_": 999})
    assert missing.status_code == 404


def test_delete_by_indexes_and_truncate(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    indexes = [put(base, b"x")[0] for _ in range(5)]
    assert httpx.delete(base, params={"_indexes_": f"{indexes[0]},{indexes[4]}"}).text == "OK"
    assert httpx.delete(base, params={"_trunc_": "true", "_index_": indexes[2]}).text == "OK"
    left = decode_list(httpx.get(base, params={"_length_": 10, "_auto_delete_": "false"}).content)
    assert [f.index for f in left] == indexes[2:4]


def test_watch_pushes_at_most_window_until_commit(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    indexes = [put(base, f"r{i}".encode())[0] for i in range(4)]
    headers = {UID: "w1", GID: "g"}
    with connect(ws_url(base, _window_=2), additional_headers=headers) as ws:
        frames = [decode_frame(ws.recv(timeout=5)) for _ in range(2)]
        assert [f.index for f in frames] == indexes[:2]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        search = httpx.get(
            base, params={"_search_": "true", "_index_": indexes[0]}, headers=headers
        )
        assert search.json() == {"ConsumerId": "w1", "IsPending": True, "WaitCount": 0}
        commit = httpx.put(base, params={"_indexes_": str(indexes[0])}, headers=headers)
        assert commit.text == "OK"
        assert decode_frame(ws.recv(timeout=5)).index == indexes[2]


def test_watch_disconnect_hands_records_to_another_consumer(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    indexes = [put(base, f"r{i}".encode())[0] for i in range(2)]
    with connect(ws_url(base, _window_=2), additional_headers={UID: "a"}) as ws:
        assert [decode_frame(ws.recv(timeout=5)).index for _ in range(2)] == indexes
    with connect(ws_url(base, _window_=2), additional_headers={UID: "b"}) as ws:
        assert sorted(decode_frame(ws.recv(timeout=5)).index for _ in range(2)) == indexes


def test_index_only_watch_sends_indexes_and_tags_without_data(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    index, rid = put(base, b"payload", k="v")
    with connect(ws_url(base, _window_=1, _index_only_="true")) as ws:
        frame = decode_frame(ws.recv(timeout=5))
    assert (frame.index, frame.data, frame.tags) == (index, b"", {"k": "v", "requestId": rid})


def test_auto_commit_watch_empties_the_queue(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    indexes = [put(base, f"r{i}".encode())[0] for i in range(5)]
    with connect(ws_url(base, _window_=1, _auto_commit_="true")) as ws:
        assert [decode_frame(ws.recv(timeout=5)).index for _ in range(5)] == indexes
        # the last record counts as done once the server is asked for the next; a new put
        # is what makes the server move on
        put(base, b"one more")
        decode_frame(ws.recv(timeout=5))
    attrs = httpx.get(base, params={"_attrs_": "true"}).json()
    assert int(attrs["stream.length"]) <= 1


def test_token_is_required_when_set(serve_door: Any) -> None:
    base = serve_door(token="s3cret").url + "/api/predict/svc"
    assert httpx.post(base, content=b"x").status_code == 401
    assert httpx.post(base, content=b"x", headers={"Authorization": "wrong"}).status_code == 401
    assert httpx.post(base, content=b"x", headers={"Authorization": "s3cret"}).status_code == 200
    ok = httpx.get(base, params={"_attrs_": "true"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(base, _window_=1), open_timeout=5)
    assert refused.value.response.status_code == 401


def test_unknown_queue_is_404_over_http_and_websocket(serve_door: Any) -> None:
    url = serve_door().url
    response = httpx.get(url + "/api/predict/nope", params={"_attrs_": "true"})
    assert response.status_code == 404 and "nope" in response.json()["error"]
    assert httpx.get(url + "/elsewhere").status_code == 404
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(url + "/api/predict/nope", _window_=1), open_timeout=5)
    assert refused.value.response.status_code == 404


@pytest.mark.parametrize(
    ("method", "query"),
    [
        ("GET", {"_index_": "abc"}),
        ("GET", {"requestId": "é" * 3}),
        ("POST", {"requestId": "x" * 300}),
        ("GET", {"_index_": "-1"}),
        ("GET", {"_length_": "0"}),
        ("GET", {"_timeout_": "soon"}),
        ("GET", {"_auto_delete_": "maybe"}),
        ("GET", {"_search_": "true"}),
        ("GET", {"_watch_": "true"}),
        ("DELETE", {}),
        ("DELETE", {"_indexes_": "1,x"}),
        ("DELETE", {"_trunc_": "true"}),
        ("PUT", {"_indexes_": ""}),
    ],
)
def test_bad_query_values_get_400_and_the_door_keeps_serving(
    serve_door: Any, method: str, query: dict[str, str]
) -> None:
    base = serve_door().url + "/api/predict/svc"
    response = httpx.request(method, base, params=query)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}  # the one error shape of every HTTP door
    assert httpx.get(base, params={"_attrs_": "true"}).status_code == 200


def test_bad_websocket_query_is_refused_with_400(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(base, _window_="zero"), open_timeout=5)
    assert refused.value.response.status_code == 400


def test_dataframe_body_is_decoded_and_bad_protobuf_is_400(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    headers = {"content-type": DATAFRAME_MEDIA}
    good = httpx.post(base, content=encode_frame(0, b"inner", {"t": "1"}), headers=headers)
    assert good.status_code == 200
    (frame,) = decode_list(httpx.get(base, params={"_index_": good.text}).content)
    assert (frame.data, frame.tags["t"]) == (b"inner", "1")
    bad = httpx.post(base, content=b"\x0a\xff\xff", headers=headers)
    assert bad.status_code == 400 and "DataFrameProto" in bad.json()["error"]
    assert httpx.post(base, content=b"\x0a\xff\xff").status_code == 200  # raw data is fine


def test_full_queue_answers_429_with_retry_after(serve_door: Any) -> None:
    base = serve_door(max_length=2).url + "/api/predict/svc"
    put(base, b"1")
    put(base, b"2")
    refused = httpx.post(base, content=b"3")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert "full" in refused.json()["error"]


def test_oversized_body_is_413(serve_door: Any) -> None:
    base = serve_door(max_payload_bytes=100).url + "/api/predict/svc"
    assert httpx.post(base, content=b"x" * 101).status_code == 413
    assert httpx.post(base, content=b"x" * 100).status_code == 200


def test_unsupported_method_is_405(serve_door: Any) -> None:
    base = serve_door().url + "/api/predict/svc"
    assert httpx.patch(base).status_code == 405


def test_unknown_queue_is_404_naming_the_queues(serve_door: Any) -> None:
    response = httpx.get(serve_door().url + "/api/predict/other", params={"_attrs_": "true"})
    assert response.status_code == 404 and "svc" in response.json()["error"]
