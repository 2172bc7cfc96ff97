"""Queue service: asynchronous work that loses nothing, on SQLite or Redis Streams.

``QueueService`` holds the semantics; ``SqliteBackend`` (embedded, default) and
``RedisBackend`` (shared by many servers) store the records; ``open_queue`` builds a service
from a URL. The door serving the PAI-EAS queue protocol over HTTP and WebSocket is
``servekit.server.queue_door.QueueDoor``, next to the other doors.
"""

from servekit.queue.backend import Backend, Superseded
from servekit.queue.config import open_queue
from servekit.queue.record import GroupInfo, Position, Record, Stats
from servekit.queue.service import DEFAULT_GROUP, QueueService
from servekit.queue.sqlite_backend import SqliteBackend
from servekit.queue.subscription import Subscription

__all__ = [
    "DEFAULT_GROUP",
    "Backend",
    "GroupInfo",
    "Position",
    "QueueService",
    "Record",
    "SqliteBackend",
    "Stats",
    "Subscription",
    "Superseded",
    "open_queue",
]
