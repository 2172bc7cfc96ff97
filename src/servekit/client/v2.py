"""Native clients for the Open Inference Protocol (v2): numpy in, numpy out."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from servekit.client._errors import ClientError
from servekit.client._transport import Response, Retry, Transport
from servekit.errors import BadRequest
from servekit.protocol.v2 import encode_infer_request, parse_infer_response

Inputs = Mapping[str, Any] | np.ndarray


class Client:
    """A pooled, retrying v2 client: ``Client(url).infer("model", {"x": array})``.

    ``binary=True`` sends tensors with the binary data extension (faster for big arrays)
    and asks for binary outputs. Errors raise ``servekit.client.HTTPStatusError`` carrying
    the status and the server's message; connection errors and 5xx are retried.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        timeout: float = 30.0,
        retries: int = 3,
        binary: bool = False,
        max_connections: int = 100,
    ) -> None:
        self.binary = binary
        self._transport = Transport(
            url,
            timeout=timeout,
            retry=Retry(attempts=retries),
            token=token,
            max_connections=max_connections,
        )

    def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        version: str | None = None,
        outputs: Sequence[str] = (),
        binary: bool | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``model`` on ``inputs`` (a dict of arrays, or one array named ``input-0``)."""
        use_binary = self.binary if binary is None else binary
        if isinstance(inputs, np.ndarray):
            inputs = {"input-0": inputs}
        body, json_length = encode_infer_request(
            inputs,
            binary=use_binary,
            outputs=outputs,
            binary_output=use_binary,
            request_id=request_id,
            parameters=parameters,
        )
        headers = {"content-type": "application/json"}
        if json_length is not None:
            headers = {
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(json_length),
            }
        response = self._transport.request(
            "POST", _model_path(model, version) + "/infer", body, headers, timeout=timeout
        )
        return _decode(response)

    def ready(self, model: str | None = None, version: str | None = None) -> bool:
        """Whether the server (or one model) is ready to serve."""
        path = "/v2/health/ready" if model is None else _model_path(model, version) + "/ready"
        return self._transport.send("GET", path).status == 200

    def live(self) -> bool:
        return self._transport.send("GET", "/v2/health/live").status == 200

    def metadata(self, model: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Server metadata, or a model's (name, versions, inputs, outputs)."""
        path = "/v2" if model is None else _model_path(model, version)
        return orjson.loads(self._transport.request("GET", path).body)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of :class:`Client` (same transport, run in worker threads)."""

    def __init__(self, url: str, **options: Any) -> None:
        self._client = Client(url, **options)

    async def infer(self, model: str, inputs: Inputs, **options: Any) -> dict[str, np.ndarray]:
        return await asyncio.to_thread(self._client.infer, model, inputs, **options)

    async def ready(self, model: str | None = None, version: str | None = None) -> bool:
        return await asyncio.to_thread(self._client.ready, model, version)

    async def live(self) -> bool:
        return await asyncio.to_thread(self._client.live)

    async def metadata(
        self, model: str | None = None, version: str | None = None
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self._client.metadata, model, version)

    async def close(self) -> None:
        self._client.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _model_path(model: str, version: str | None) -> str:
    path = f"/v2/models/{model}"
    return f"{path}/versions/{version}" if version else path


def _decode(response: Response) -> dict[str, np.ndarray]:
    raw = response.headers.get("inference-header-content-length")
    try:
        return parse_infer_response(response.body, int(raw) if raw is not None else None).outputs
    except (BadRequest, ValueError) as exc:
        raise ClientError(f"server sent an infer response servekit cannot read: {exc}") from exc
