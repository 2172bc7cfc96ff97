"""Protobuf messages of the PAI-EAS predict protocol (TensorFlow, PyTorch and Blade flavours).

Generated from the ``.proto`` files beside this module with ``grpcio-tools==1.62.3``
(protoc 25.1), so the code runs on any ``protobuf>=4.25`` runtime. To regenerate, from ``src/``::

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \\
        servekit/protocol/eas_pb/tf_predict.proto servekit/protocol/eas_pb/torch_predict.proto \\
        servekit/protocol/eas_pb/blade_predict.proto
    sed -i '1i # ruff: noqa' servekit/protocol/eas_pb/*_pb2.py servekit/protocol/eas_pb/*_pb2.pyi
"""
