"""The EAS queue protocol over HTTP and WebSocket: a raw ASGI app for a registry of queues.

=========  ==========================================  =============================================
method     query                                       does
=========  ==========================================  =============================================
POST       tags as ``name=value``, ``requestId``       put the body; answers the index, request id
                                                       in ``X-Eas-Queueservice-Request-Id``
GET        ``_attrs_=true``                            attributes (JSON)
GET        ``_search_=true&_index_=N``                 ``{ConsumerId, IsPending, WaitCount}``
GET        ``_index_ _length_ _timeout_ _auto_delete_``  records (``DataFrameListProto``)
           ``requestId``, tags
DELETE     ``_trunc_=true&_index_=N``                  drop records before N
DELETE     ``_indexes_=1,2``                           delete records
PUT        ``_indexes_=1,2``                           commit records for the caller's group
WS         ``_watch_=true _index_ _window_``           push records, one ``DataFrameProto`` per
           ``_index_only_ _auto_commit_``              binary message
=========  ==========================================  =============================================

The consumer is ``X-EAS-QueueService-Redis-Uid`` in group ``X-EAS-QueueService-Redis-Gid``
(default ``eas``). With a token, ``Authorization`` must carry it (raw, ``Bearer``, or an EAS
signature on a request without a query string: the signature does not cover one), else 401.

Mounted with ``routes(predict=…, services=…)`` (as ``servekit serve --queue`` does), a POST to
a model's input queue that is not a queue request (:func:`is_queue_request`: no consumer
identity header, no query string, no ``DataFrameProto`` body) is a synchronous EAS prediction
instead, so an EAS ``PredictClient`` keeps working at the same URL.

Its routes go on the one HTTP kit (:mod:`servekit.server.http_app`): ``servekit serve
--queue`` adds ``door.routes()`` to the server's own and calls ``door.startup()`` /
``door.shutdown()`` in its lifespan. Standalone, ``QueueDoor`` is itself an ASGI app (it runs
the lifespan): ``uvicorn.run(door, host="127.0.0.1", port=8080)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Collection, Mapping

import orjson

from servekit.errors import BadRequest, NotFound, ServekitError
from servekit.protocol.queue_wire import WireError, decode_frame, encode_list, encode_record
from servekit.queue import params
from servekit.queue.service import DEFAULT_GROUP, MAX_GET_LENGTH, MAX_WINDOW, QueueService
from servekit.queue.subscription import Subscription
from servekit.server.asgi import Receive, Scope, Send
from servekit.server.http_app import HttpApp, deny_websocket
from servekit.server.routing import Handler, Request, Route

log = logging.getLogger("servekit.queue")

PREFIX = "/api/predict/"
TEMPLATE = "/api/predict/{queue:path}"
HEADER_REQUEST_ID = b"x-eas-queueservice-request-id"
HEADER_UID = b"x-eas-queueservice-redis-uid"
HEADER_GID = b"x-eas-queueservice-redis-gid"
PROTOBUF = b"application/vnd.google.protobuf"
# A POST body in this media type is a DataFrameProto (data + tags) rather than raw data.
DATAFRAME_MEDIA = "application/vnd.google.protobuf; proto=streaming.DataFrameProto"
PAYLOAD_SETTING = "SERVEKIT_QUEUE_MAX_PAYLOAD_BYTES / --queue-max-payload-bytes"

Response = tuple[int, list[tuple[bytes, bytes]], bytes]


def _text(body: str, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return 200, [(b"content-type", b"text/plain; charset=utf-8"), *(headers or [])], body.encode()


def _json(payload: object) -> Response:
    return 200, [(b"content-type", b"application/json")], orjson.dumps(payload)


class QueueDoor:
    """Serves named ``QueueService``s in the EAS queue protocol under ``/api/predict/<name>``."""

    def __init__(
        self,
        queues: Mapping[str, QueueService],
        token: str | None = None,
        *,
        max_wait: float = 600.0,
    ) -> None:
        self.queues = dict(queues)
        self.token = token
        self.max_wait = max_wait
        self.stop_timeout = 5.0
        self._watchers: set[asyncio.Task[None]] = set()

    # -- mounting -------------------------------------------------------------------------

    def routes(self, predict: Handler | None = None, services: Collection[str] = ()) -> list[Route]:
        """The door's HTTP and WebSocket routes, for the one HTTP kit.

        With ``predict``, a POST to one of the queues named in ``services`` that is not a queue
        request goes to ``predict`` (with the queue's name as ``params["name"]``).
        """
        verbs = ("POST", "GET", "DELETE", "PUT")
        http = self._http if predict is None else self._or_predict(predict, frozenset(services))
        return [Route.http(verbs, TEMPLATE, http), Route.ws(TEMPLATE, self._websocket)]

    def _or_predict(self, predict: Handler, services: frozenset[str]) -> Handler:
        async def handle(request: Request) -> None:
            name = request.params["queue"].strip("/")
            if request.method == "POST" and name in services and not is_queue_request(request):
                request.params["name"] = name
                await predict(request)
            else:
                await self._http(request)

        return handle

    @functools.cached_property
    def app(self) -> HttpApp:
        """The door alone as an ASGI app (with its lifespan)."""
        return HttpApp(
            self.routes(), token=self.token, startup=self.startup, shutdown=self.shutdown
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def startup(self) -> None:
        """Open every queue (in the event loop that will serve them)."""
        for queue in self.queues.values():
            await queue.start()

    async def shutdown(self) -> None:
        """End the watchers and close every queue."""
        for task in list(self._watchers):
            task.cancel()
        for queue in self.queues.values():
            await queue.close()

    async def _http(self, request: Request) -> None:
        queue = self._queue(request.params["queue"])
        query = params.parse_query(request.scope.get("query_string", b""))
        headers = dict(request.scope["headers"])
        gid = headers.get(HEADER_GID, b"").decode("latin-1") or DEFAULT_GROUP
        method = request.method
        if method == "POST":
            body = await request.body(queue.max_payload_bytes, PAYLOAD_SETTING)
            response = await self._put(queue, query, headers, body)
        elif method in ("GET", "HEAD"):
            response = await self._get(queue, query, gid)
        elif method == "DELETE":
            response = await self._delete(queue, query)
        else:
            await queue.commit(params.indexes(query), gid)
            response = _text("OK")
        await _respond(request.send, response)

    async def _put(
        self,
        queue: QueueService,
        query: Mapping[str, str],
        headers: Mapping[bytes, bytes],
        body: bytes,
    ) -> Response:
        tags = params.tags_of(query)
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if _is_dataframe(content_type):
            try:
                frame = decode_frame(body)
            except WireError as exc:
                raise BadRequest(f"body is not a valid DataFrameProto: {exc}") from exc
            body, tags = frame.data, {**frame.tags, **tags}
        index, request_id = await queue.put(body, tags, request_id=params.request_id(query))
        return _text(str(index), [(HEADER_REQUEST_ID, request_id.encode())])

    async def _get(self, queue: QueueService, query: Mapping[str, str], gid: str) -> Response:
        if params.boolean(query, "_attrs_", False):
            return _json(await queue.attributes())
        if params.boolean(query, "_search_", False):
            position = await queue.search(params.integer(query, "_index_", None), gid)
            return _json(position.as_eas())
        if params.boolean(query, "_watch_", False):
            raise BadRequest("_watch_ needs a WebSocket connection (ws:// or wss://)")
        records = await queue.get(
            request_id=params.request_id(query),
            index=params.integer(query, "_index_", 0),
            length=params.integer(query, "_length_", 1, low=1, high=MAX_GET_LENGTH),
            timeout=params.duration(query, "_timeout_", 5.0, limit=self.max_wait),
            auto_delete=params.boolean(query, "_auto_delete_", True),
            tags=params.tags_of(query),
        )
        body = encode_list(encode_record(r) for r in records)
        return 200, [(b"content-type", PROTOBUF)], body

    async def _delete(self, queue: QueueService, query: Mapping[str, str]) -> Response:
        if params.boolean(query, "_trunc_", False):
            await queue.truncate(params.integer(query, "_index_", None))
            return _text("OK")
        if "_indexes_" in query:
            await queue.delete(params.indexes(query))
            return _text("OK")
        raise BadRequest("DELETE needs _trunc_=true&_index_=N or _indexes_=i,j,...")

    def _queue(self, name: str) -> QueueService:
        queue = self.queues.get(name.strip("/"))
        if queue is None:
            known = ", ".join(sorted(self.queues)) or "none"
            raise NotFound(f"no queue named {name!r} (queues: {known})")
        return queue

    # -- WebSocket ------------------------------------------------------------------------

    async def _websocket(self, request: Request) -> None:
        scope, receive, send = request.scope, request.receive, request.send
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            headers = dict(scope["headers"])
            queue = self._queue(request.params["queue"])
            query = params.parse_query(scope.get("query_string", b""))
            if not params.boolean(query, "_watch_", False):
                raise BadRequest("a WebSocket on a queue needs _watch_=true")
            sub = queue.watch(
                index=params.integer(query, "_index_", 0),
                window=params.integer(query, "_window_", 1, low=1, high=MAX_WINDOW),
                uid=headers.get(HEADER_UID, b"").decode("latin-1") or None,
                gid=headers.get(HEADER_GID, b"").decode("latin-1") or DEFAULT_GROUP,
                auto_commit=params.boolean(query, "_auto_commit_", False),
            )
            index_only = params.boolean(query, "_index_only_", False)
        except ServekitError as exc:
            await deny_websocket(scope, send, exc)
            return
        await send({"type": "websocket.accept"})
        task = asyncio.current_task()
        assert task is not None
        self._watchers.add(task)
        try:
            await self._serve_watch(sub, receive, send, index_only)
        finally:
            self._watchers.discard(task)

    async def _serve_watch(
        self, sub: Subscription, receive: Receive, send: Send, index_only: bool
    ) -> None:
        pump = asyncio.create_task(self._pump(sub, send, index_only))
        listen = asyncio.create_task(_until_disconnect(receive))
        client_left = False
        try:
            done, _ = await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
            client_left = listen in done
        finally:
            for task in (pump, listen):
                task.cancel()
            # Closing the subscription also ends the pump's iteration: a cancellation can be
            # lost inside a store client (redis-py swallows one landing mid-connect).
            try:
                await asyncio.shield(sub.close())
            except Exception:  # the store is down: its lease will lapse instead
                log.warning("closing watch of %s/%s failed", sub.gid, sub.uid, exc_info=True)
            _, stuck = await asyncio.wait({pump, listen}, timeout=self.stop_timeout)
            if stuck:
                log.error("watch of %s/%s did not stop in %ss", sub.gid, sub.uid, self.stop_timeout)
        failed = pump.done() and not pump.cancelled() and pump.exception() is not None
        if not client_left:  # the subscription ended (superseded, closed, failed): say so
            with contextlib.suppress(OSError, RuntimeError):
                await send({"type": "websocket.close", "code": 1011 if failed else 1000})

    @staticmethod
    async def _pump(sub: Subscription, send: Send, index_only: bool) -> None:
        try:
            async for record in sub:
                await send(
                    {
                        "type": "websocket.send",
                        "bytes": encode_record(record, index_only=index_only),
                    }
                )
        except OSError:  # the client went away mid-send
            return
        except Exception:
            log.exception("watch of %s/%s failed", sub.gid, sub.uid)
            raise


async def _respond(send: Send, response: Response) -> None:
    status, headers, body = response
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "websocket.disconnect":
        pass  # client messages carry nothing in this protocol


def is_queue_request(request: Request) -> bool:
    """Whether a POST speaks the queue protocol rather than the synchronous predict protocol.

    Every EAS queue client (the published SDK's and servekit's) sends its consumer identity
    (``X-EAS-QueueService-Redis-Uid`` / ``-Gid``) with every request; a put may carry tags or a
    ``requestId`` in the query, or a ``DataFrameProto`` body. A ``PredictClient`` sends none
    of these: only the body, and its content type and signature headers.
    """
    if request.scope.get("query_string"):
        return True
    for name, value in request.scope["headers"]:
        if name in (HEADER_UID, HEADER_GID):
            return True
        if name == b"content-type" and _is_dataframe(value.decode("latin-1")):
            return True
    return False


def _is_dataframe(content_type: str) -> bool:
    media, _, rest = content_type.partition(";")
    if media.strip().lower() != PROTOBUF.decode():
        return False
    options = dict(p.strip().partition("=")[::2] for p in rest.split(";") if p.strip())
    return options.get("proto", "").strip('"') == "streaming.DataFrameProto"
