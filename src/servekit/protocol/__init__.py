"""Wire protocols: request/response types, parsing and validation."""

from servekit.protocol.v2 import (
    InferRequest,
    RequestedOutput,
    encode_infer_response,
    error_body,
    model_metadata,
    parse_infer_request,
    server_metadata,
)

__all__ = [
    "InferRequest",
    "RequestedOutput",
    "encode_infer_response",
    "error_body",
    "model_metadata",
    "parse_infer_request",
    "server_metadata",
]
