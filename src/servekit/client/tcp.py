"""A client for the dubhe-sdk-style TCP door: length-prefixed JSON frames on one connection.

    with TcpClient("127.0.0.1", 9000) as client:
        client.heartbeat()                      # {"flag": 1, "message": "service online"}
        result = client.infer({"x": [1, 2]})    # the answer's ``data``
        answers = client.pipeline([m1, m2, m3]) # all sent first, answers read in order

Connecting is retried with backoff (:class:`Retry`); a message already sent is never resent.
A kept connection the server closed while idle is noticed before sending, and replaced.

``TcpClient(..., token=...)`` puts the token into every frame it sends (the door's ``token``
field). A failure answer (``flag`` 2) raises the status error of its ``code`` (the HTTP status the
same failure has on the HTTP doors): ``NotFoundError`` for an unknown model, and so on; an
answer without a code counts as 500.
"""

from __future__ import annotations

import collections
import itertools
import select
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from servekit.client._errors import ConnectError, ProtocolError, RequestTimeout, status_error
from servekit.client._retry import Retry
from servekit.protocol.tcp_frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_SUCCESS,
    FrameDecoder,
    FrameError,
    ReqType,
    encode_frame,
)

__all__ = ["TcpClient"]


class TcpClient:
    """One TCP connection to a frame server; thread-safe, one exchange at a time."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        *,
        timeout: float = 5.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        retry: Retry | None = None,
        token: str | None = None,
    ) -> None:
        self.host = host
        self.token = token
        self.port = port
        self.timeout = timeout
        self.max_frame_size = max_frame_size
        self.retry = retry or Retry()
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder(max_frame_size)
        self._pending: collections.deque[Any] = collections.deque()
        self._outstanding = 0  # messages sent whose answer has not been read
        self._numbers = itertools.count(1)
        self._lock = threading.RLock()

    # dubhe request types

    def heartbeat(self) -> dict[str, Any]:
        """Ask whether the service is online (``req_type`` 0)."""
        return self._checked(self.request({"req_type": ReqType.HEARTBEAT}))

    def train(self, **params: Any) -> dict[str, Any]:
        """Start a training job (``req_type`` 1); returns the acknowledgement."""
        return self._checked(self.request({**params, "req_type": ReqType.TRAIN}))

    def predict(self, **params: Any) -> dict[str, Any]:
        """Start an offline evaluation job (``req_type`` 2); returns the acknowledgement."""
        return self._checked(self.request({**params, "req_type": ReqType.PREDICT}))

    def infer(self, data: Any, *, request_number: int | None = None, **params: Any) -> Any:
        """Run online inference (``req_type`` 3) on ``data``; returns the answer's ``data``."""
        number = next(self._numbers) if request_number is None else request_number
        message = {**params, "req_type": ReqType.INFERENCE, "request_number": number, "data": data}
        answer = self._checked(self.request(message))
        if answer.get("request_number", number) != number:
            raise ProtocolError(
                f"answer to request {answer.get('request_number')} arrived for {number}"
            )
        return answer.get("data")

    # frames

    def request(self, message: Any) -> Any:
        """Send one message and return the next answer."""
        with self._lock:
            self.send(message)
            return self.receive()

    def pipeline(self, messages: Iterable[Any]) -> list[Any]:
        """Send every message, then read as many answers, returned in the messages' order.

        The server answers each request when it is done, so answers may arrive out of order;
        they are matched back by ``request_number`` when every message carries a distinct one.
        """
        with self._lock:
            sent = list(messages)
            for message in sent:
                self.send(message)
            answers = [self.receive() for _ in sent]
        numbers = [m.get("request_number") if isinstance(m, dict) else None for m in sent]
        if None in numbers or len(set(numbers)) != len(numbers):
            return answers
        by_number = {a.get("request_number"): a for a in answers if isinstance(a, dict)}
        if set(by_number) != set(numbers):
            return answers
        return [by_number[n] for n in numbers]

    def send(self, message: Any) -> None:
        """Send one frame (connecting first if needed), with the token if the client has one."""
        if self.token is not None and isinstance(message, dict) and "token" not in message:
            message = {**message, "token": self.token}
        frame = encode_frame(message, max_size=self.max_frame_size)
        with self._lock:
            sock = self._connection()
            try:
                sock.settimeout(self.timeout)
                sock.sendall(frame)
            except OSError as exc:
                self._reset()
                raise ConnectError(f"{self._address}: send failed: {exc}") from exc
            self._outstanding += 1

    def receive(self) -> Any:
        """The next answer from the server, waiting at most ``timeout`` seconds."""
        with self._lock:
            deadline = time.monotonic() + self.timeout
            while not self._pending:
                self._read_more(deadline)
            item = self._pending.popleft()
            self._outstanding -= 1
            if isinstance(item, FrameError):
                if item.fatal:
                    self._reset()
                raise ProtocolError(f"{self._address}: bad frame from server: {item}")
            return item

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        with self._lock:
            self._reset()

    def __enter__(self) -> TcpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # internals

    @property
    def _address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def _connection(self) -> socket.socket:
        if self._sock is not None and not self._outstanding and _readable(self._sock):
            self._reset()  # closed by the server while idle
        if self._sock is None:
            self._sock = self.retry.call(self._connect)
        return self._sock

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ConnectError(f"{self._address}: cannot connect: {exc}", sent=False) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._decoder = FrameDecoder(self.max_frame_size)
        return sock

    def _read_more(self, deadline: float) -> None:
        sock = self._connection()
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(256 * 1024)
        except TimeoutError:
            self._reset()  # an answer may still come: this connection is out of step
            raise RequestTimeout(f"{self._address}: no answer within {self.timeout}s") from None
        except OSError as exc:
            self._reset()
            raise ConnectError(f"{self._address}: connection failed: {exc}") from exc
        if not chunk:
            self._reset()
            raise ConnectError(f"{self._address}: the server closed the connection")
        self._pending.extend(self._decoder.feed(chunk))

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._decoder = FrameDecoder(self.max_frame_size)
        self._pending.clear()
        self._outstanding = 0

    def _checked(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            kind = type(answer).__name__
            raise ProtocolError(f"{self._address}: expected a JSON object answer, got {kind}")
        if answer.get("flag") != FLAG_SUCCESS:
            code = answer.get("code")
            message = answer.get("message") or "the server reported a failure"
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            raise status_error(status, message=f"{self._address}: {message}")
        return answer


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
