"""The Open Inference Protocol (KServe v2) over gRPC: ``grpc_service.proto`` and its messages.

The ``.proto`` beside this module carries the published protocol's package (``inference``),
names and field numbers. Its generated messages live in servekit's own descriptor pool
(``POOL``), not protobuf's default one: tritonclient, KServe and MLServer register the same
``inference.*`` names there, and a second registration in one process is an error.

Generated with ``grpcio-tools==1.62.3`` (protoc 25.1), so the code runs on any
``protobuf>=4.25`` runtime. To regenerate, from ``src/``::

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \\
        servekit/protocol/v2_grpc/grpc_service.proto
    sed -i -e '1i # ruff: noqa' servekit/protocol/v2_grpc/*_pb2.py*
    sed -i -e 's/^DESCRIPTOR = _descriptor_pool.Default()/from servekit.protocol.v2_grpc \\
        import POOL\\n\\nDESCRIPTOR = POOL/' servekit/protocol/v2_grpc/grpc_service_pb2.py
    ruff format servekit/protocol/v2_grpc

The service is registered by name (``inference.GRPCInferenceService``) by the server door
and the client, without generated gRPC stubs.
"""

from google.protobuf import descriptor_pool

#: servekit's own descriptor pool for the ``inference`` package (see above).
POOL = descriptor_pool.DescriptorPool()

SERVICE = "inference.GRPCInferenceService"
