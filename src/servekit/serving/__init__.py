"""mlrun-compatible model serving: ``from servekit.serving import V2ModelServer``.

See docs/mlrun.md. Everything runs on servekit's engine: a V2ModelServer is served by a
``servekit.Model`` (:meth:`V2ModelServer.as_model`) through the one batcher.
"""

from servekit.serving.adapter import Event, MlrunModel
from servekit.serving.v2_model_server import LocalFile, ServingContext, V2ModelServer

__all__ = ["Event", "LocalFile", "MlrunModel", "ServingContext", "V2ModelServer"]
