"""servekit.client.TcpClient against a real dubhe-style frame server on a loopback port."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from servekit.client import ClientError, ConnectError, RequestTimeout, Retry
from servekit.client.tcp import TcpClient
from servekit.protocol.tcp_frames import FrameDecoder, FrameError, FrameTooLarge, encode_frame


class FrameServer:
    """asyncio TCP server in a thread answering frames as dubhe-sdk's server does.

    Inference sums ``data``; ``"boom"`` and ``"crash"`` fail, ``"slow"`` answers after 1 s.
    With ``close_after_answer`` it closes each connection after one answer.
    """

    def __init__(self, *, close_after_answer: bool = False) -> None:
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.handlers: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        decoder = FrameDecoder(max_size=64 * 1024)
        try:
            while chunk := await reader.read(65536):
                for item in decoder.feed(chunk):
                    writer.write(encode_frame(await self._answer(item)))
                    await writer.drain()
                    if self.close_after_answer or (isinstance(item, FrameError) and item.fatal):
                        return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.handlers.discard(task)

    async def _answer(self, item: Any) -> dict[str, Any]:
        if isinstance(item, FrameError):
            return {"flag": 2, "message": str(item), "status": item.status}
        req_type = item.get("req_type")
        if req_type == 0:
            return {"flag": 1, "message": "service online"}
        if req_type in (1, 2):
            return {"flag": 1, "message": "job starting now"}
        if req_type != 3:
            return {"flag": 2, "message": "req_type error", "status": 400}
        data = item.get("data")
        if data == "boom":
            return {"flag": 2, "message": "exception occurs", "status": 422}
        if data == "crash":
            return {"flag": 2, "message": "model crashed"}
        if data == "slow":
            await asyncio.sleep(1)
        result = sum(data) if isinstance(data, list) else data
        return {"flag": 1, "request_number": item["request_number"], "data": result}

    def __enter__(self) -> FrameServer:
        self.thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(timeout=10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for task in list(self.handlers):
                task.cancel()
            await asyncio.gather(*self.handlers, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def frame_server() -> Iterator[FrameServer]:
    with FrameServer() as server:
        yield server


def test_heartbeat_and_job_requests_are_acknowledged(frame_server) -> None:
    with TcpClient("127.0.0.1", frame_server.port) as client:
        assert client.heartbeat() == {"flag": 1, "message": "service online"}
        assert client.train(epochs=3)["message"] == "job starting now"
        assert client.predict()["flag"] == 1


def test_infer_returns_data_and_numbers_requests(frame_server) -> None:
    with TcpClient("127.0.0.1", frame_server.port) as client:
        assert client.infer([1, 2, 3]) == 6
        assert client.infer([10], request_number=77) == 10
        answer = client.request({"req_type": 3, "request_number": 5, "data": [4]})
    assert answer == {"flag": 1, "request_number": 5, "data": 4}


def test_many_requests_share_one_connection(frame_server) -> None:
    before = frame_server.connections
    with TcpClient("127.0.0.1", frame_server.port) as client:
        assert [client.infer([n]) for n in range(20)] == list(range(20))
    assert frame_server.connections == before + 1


def test_pipelined_requests_come_back_in_order(frame_server) -> None:
    messages = [{"req_type": 3, "request_number": n, "data": [n, n]} for n in range(50)]
    with TcpClient("127.0.0.1", frame_server.port) as client:
        answers = client.pipeline(messages)
    assert [a["request_number"] for a in answers] == list(range(50))
    assert [a["data"] for a in answers] == [2 * n for n in range(50)]


def test_a_failure_flag_raises_with_the_servers_message_and_status(frame_server) -> None:
    with TcpClient("127.0.0.1", frame_server.port) as client:
        with pytest.raises(ClientError, match="exception occurs") as info:
            client.infer("boom")
        assert info.value.status == 422
        with pytest.raises(ClientError, match="model crashed") as info:
            client.infer("crash")
        assert info.value.status == 500  # no status in the answer
        assert client.infer([1]) == 1  # the connection is still good


def test_request_returns_a_failure_answer_unchecked(frame_server) -> None:
    with TcpClient("127.0.0.1", frame_server.port) as client:
        answer = client.request({"req_type": 9})
    assert answer == {"flag": 2, "message": "req_type error", "status": 400}


def test_a_message_over_the_frame_limit_is_refused_before_sending(frame_server) -> None:
    with TcpClient("127.0.0.1", frame_server.port, max_frame_size=100) as client:
        with pytest.raises(FrameTooLarge):
            client.infer("x" * 200)
        assert client.infer([2]) == 2


def test_no_answer_within_the_timeout_raises_and_the_next_request_reconnects(frame_server) -> None:
    with TcpClient("127.0.0.1", frame_server.port, timeout=0.2) as client:
        with pytest.raises(RequestTimeout) as info:
            client.infer("slow")
        assert info.value.status == 504
        client.timeout = 5.0
        assert client.infer([3]) == 3


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    with FrameServer(close_after_answer=True) as server:
        with TcpClient("127.0.0.1", server.port, retry=Retry(attempts=1)) as client:
            assert client.infer([1]) == 1
            _wait_for_close(client)
            assert client.infer([2]) == 2
        assert server.connections == 2


def test_connection_refused_is_retried_with_backoff_then_raised() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = unused.getsockname()[1]
        sleeps: list[float] = []
        client = TcpClient("127.0.0.1", port, retry=Retry(attempts=3, sleep=sleeps.append))
        with pytest.raises(ConnectError, match="cannot connect"):
            client.heartbeat()
    assert len(sleeps) == 2


def _wait_for_close(client: TcpClient) -> None:
    """Block until the server's close of the client's idle socket has arrived."""
    sock = client._sock
    assert sock is not None
    sock.settimeout(5)
    assert sock.recv(1, socket.MSG_PEEK) == b""
