"""Protobuf messages of the PAI-EAS queue protocol (``queueservice.proto``).

Generated from the ``.proto`` file beside this module with ``grpcio-tools==1.62.3``
(protoc 25.1), so the code runs on any ``protobuf>=4.25`` runtime. To regenerate, from ``src/``::

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \\
        servekit/protocol/queue_pb/queueservice.proto
    sed -i '1i # ruff: noqa' servekit/protocol/queue_pb/*_pb2.py*
    ruff format servekit/protocol/queue_pb
"""
