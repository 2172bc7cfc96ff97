"""What the load tester sends: the route and body for each protocol, built once.

A body comes from ``--input FILE`` or, for v2 and EAS, is generated from the model's v2
metadata (``GET /v2/models/NAME``): one zero tensor per declared input, ``-1`` dims as 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

from servekit.bench._errors import BenchError
from servekit.client._errors import ClientError
from servekit.client._http11 import Origin
from servekit.client._transport import Transport
from servekit.codecs.tensors import decode_tensor, numpy_dtype
from servekit.errors import BadRequest
from servekit.protocol.v2 import encode_infer_request

PROTOCOLS = ("v2", "v2-binary", "eas", "virtex")
_JSON = "application/json"
_OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class Request:
    """One prepared request: where it goes and its bytes on the wire (head and body)."""

    host: str
    port: int
    url: str
    wire: bytes
    body_size: int


def prepare(
    url: str,
    model: str | None,
    protocol: str = "v2",
    body: bytes | None = None,
    *,
    token: str = "",
    timeout: float = 10.0,
) -> Request:
    """The request to repeat: ``body`` as given, or generated from the model's metadata."""
    origin = parse_url(url)
    if protocol not in PROTOCOLS:
        raise BenchError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    if protocol != "virtex" and not model:
        raise BenchError(f"--protocol {protocol} needs --model NAME")
    if body is None:
        if protocol == "virtex":
            raise BenchError(
                "--protocol virtex needs --input FILE: a Virtex server publishes no metadata"
                ' to generate a body from (e.g. a file holding {"data": [[0.1, 0.2]]})'
            )
        assert model is not None
        body = generated_body(origin, model, token=token, timeout=timeout)
    elif protocol in ("v2", "v2-binary", "virtex"):
        _check_json(body, protocol)
    return request(origin, model or "", protocol, body, token=token)


def request(origin: Origin, model: str, protocol: str, body: bytes, *, token: str = "") -> Request:
    """The wire bytes of one request of ``protocol`` carrying ``body``."""
    headers = {"Content-Type": _JSON}
    if protocol == "v2-binary":
        body, json_length = binary_body(body)
        headers = {"Content-Type": _OCTETS, "Inference-Header-Content-Length": str(json_length)}
    elif protocol == "eas":
        headers = {"Content-Type": _OCTETS}
    path = {
        "v2": f"/v2/models/{quote(model, safe='')}/infer",
        "v2-binary": f"/v2/models/{quote(model, safe='')}/infer",
        "eas": f"/api/predict/{quote(model, safe='')}",
        "virtex": "",
    }[protocol]
    head = origin.head("POST", path, len(body), headers, token)
    url = f"{origin.base_url}{path}"
    return Request(origin.host, origin.port, url, head + body, len(body))


def read_input(path: str | Path) -> bytes:
    """The bytes of ``--input FILE``, with a clear error when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BenchError(f"cannot read --input {path}: {exc.strerror or exc}") from None


def generated_body(origin: Origin, model: str, *, token: str = "", timeout: float = 10.0) -> bytes:
    """A v2 JSON infer body with a zero tensor per input the model's metadata declares."""
    path = f"/v2/models/{quote(model, safe='')}"
    where = f"{origin.base_url}{path}"
    transport = Transport(origin.base_url, timeout=timeout, token=token)
    try:
        response = transport.send("GET", path)
    except ClientError as exc:
        raise BenchError(f"cannot reach the server: {exc.message}") from None
    finally:
        transport.close()
    if response.status != 200:
        text = response.body[:200].decode("utf-8", "replace")
        raise BenchError(
            f"GET {where} answered {response.status} ({text}); cannot generate a body from"
            " the model's metadata: check --model, or give --input FILE"
        )
    try:
        inputs = orjson.loads(response.body)["inputs"]
        return encode_infer_request({spec["name"]: _zeros(spec) for spec in inputs})[0]
    except (orjson.JSONDecodeError, KeyError, TypeError, BadRequest) as exc:
        raise BenchError(
            f"GET {where}: the metadata declares no usable inputs ({exc}); give --input FILE"
        ) from None


def binary_body(json_body: bytes) -> tuple[bytes, int]:
    """A v2 JSON infer body re-encoded with binary tensors: (body, JSON header length)."""
    try:
        doc = orjson.loads(json_body)
        arrays = {spec["name"]: decode_tensor(spec) for spec in doc["inputs"]}
    except (orjson.JSONDecodeError, KeyError, TypeError, BadRequest) as exc:
        raise BenchError(f"the body is not a v2 JSON infer request: {exc}") from None
    body, json_length = encode_infer_request(arrays, binary=True)
    assert json_length is not None
    return body, json_length


def _zeros(spec: dict[str, Any]) -> np.ndarray:
    shape = [1 if int(dim) < 0 else int(dim) for dim in spec["shape"]]
    if spec["datatype"] == "BYTES":
        return np.full(shape, b"0", dtype=object)
    return np.zeros(shape, dtype=numpy_dtype(spec["datatype"]))


def _check_json(body: bytes, protocol: str) -> None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BenchError(f"--input is not valid JSON for --protocol {protocol}: {exc}") from None
    key = "data" if protocol == "virtex" else "inputs"
    if not isinstance(doc, dict) or key not in doc:
        raise BenchError(f'--input for --protocol {protocol} must be a JSON object with "{key}"')


def parse_url(url: str) -> Origin:
    try:
        origin = Origin.parse(url)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    if origin.scheme != "http":
        raise BenchError(f"{url}: servekit bench speaks plain http:// only")
    return origin
