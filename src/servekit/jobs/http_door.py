"""The jobs HTTP door: dubhe-sdk's routes (GET and POST, JSON) and job control, on the one
HTTP kit (token, body limits, 404/405 come with it).

=====================  ====================================================================
``/heart``             ``{"flag": 1, "message": "service online"}`` (public)
``/train/start``       start a training job: ``{"flag": 1, "message", "job_id"}``
``/predict/batch``     start an offline evaluation job: the same answer
``/predict/multiple``  online inference: ``{"flag": 1, "message", "data"}``
``GET /jobs``          every job remembered
``GET /jobs/{id}``     one job's state, progress, last metrics, times, error
``DELETE /jobs/{id}``  cancel a job (it sees ``ctx.cancelled``)
=====================  ====================================================================

A failure is ``{"flag": 2, "message": …, "error": …}`` with its HTTP status (400 bad
parameters or another instance's request, 404 no such job, 429 too many jobs, 500 the
inference method raised).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from servekit.errors import BadRequest, Cancelled, ModelError, ServekitError
from servekit.jobs.service import JobsService
from servekit.server.asgi import send_bytes, send_json, watch_disconnect
from servekit.server.auth import TokenGuard
from servekit.server.http_app import HttpApp
from servekit.server.routing import Handler, Request, Route

__all__ = ["jobs_http_app", "parse_params"]

BOTH = ("GET", "POST")
_STARTED = {1: "model train starting now", 2: "model predict starting now"}


def parse_params(body: bytes, query: bytes = b"") -> dict[str, Any]:
    """A request's parameters: the JSON object of the body (or a JSON string holding one, as
    dubhe-sdk accepts), else the query string."""
    if not body.strip():
        return dict(parse_qsl(query.decode("latin-1")))
    try:
        params = orjson.loads(body)
        if isinstance(params, str):
            params = orjson.loads(params)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"param error: the body is not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise BadRequest(f"param error: request is not a JSON object ({type(params).__name__})")
    return params


def _flagged(handler: Handler) -> Handler:
    """Answer a failure in dubhe's shape: flag 2 and the message, with the error's status."""

    async def answer(request: Request) -> None:
        try:
            await handler(request)
        except Cancelled:
            raise
        except ServekitError as exc:
            await _failure(request, exc)
        except Exception as exc:  # the inference method's failure is this request's answer
            await _failure(request, ModelError(f"model inference failed: {_named(exc)}"))

    return answer


async def _failure(request: Request, error: ServekitError) -> None:
    body = orjson.dumps({"flag": 2, "message": error.message, "error": error.message})
    headers = [(b"content-type", b"application/json")]
    headers += [(k.encode(), v.encode()) for k, v in error.headers().items()]
    await send_bytes(request.send, error.status, body, headers)


def _named(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def jobs_http_app(
    service: JobsService,
    *,
    token: str | None = None,
    guard: TokenGuard | None = None,
    max_body_size: int = 64 * 1024 * 1024,
) -> HttpApp:
    """The jobs routes on an :class:`HttpApp` whose lifespan starts and stops ``service``."""

    async def params(request: Request) -> dict[str, Any]:
        found = parse_params(await request.body(), request.scope.get("query_string", b""))
        service.check_instance(found)
        return found

    async def heart(request: Request) -> None:
        await send_json(request.send, 200, {"flag": 1, "message": "service online"})

    def starter(req_type: int) -> Handler:
        async def start(request: Request) -> None:
            given = await params(request)
            job = service.submit(req_type, {**given, "req_type": req_type})
            answer = {"flag": 1, "message": _STARTED[req_type], "job_id": job.id}
            await send_json(request.send, 200, answer)

        return start

    async def multiple(request: Request) -> None:
        given = await params(request)
        data = await service.infer(
            {**given, "req_type": 3}, cancelled_by=watch_disconnect(request.scope, request.receive)
        )
        answer: dict[str, Any] = {"flag": 1, "message": "model inference success", "data": data}
        if "request_number" in given:
            answer["request_number"] = given["request_number"]
        try:
            body = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:
            raise ModelError(f"the inference result is not JSON: {exc}") from None
        await send_bytes(request.send, 200, body)

    async def list_jobs(request: Request) -> None:
        await send_json(request.send, 200, {"jobs": [j.to_dict() for j in service.runner.jobs()]})

    async def get_job(request: Request) -> None:
        job = service.runner.get(request.params["job_id"])
        await send_json(request.send, 200, {"flag": 1, **job.to_dict()})

    async def cancel_job(request: Request) -> None:
        job = service.runner.cancel(request.params["job_id"])
        message = "job already finished" if job.finished else "job cancellation requested"
        await send_json(request.send, 200, {"flag": 1, "message": message, **job.to_dict()})

    routes = [
        Route.http(BOTH, "/heart", _flagged(heart), public=True),
        Route.http(BOTH, "/train/start", _flagged(starter(1))),
        Route.http(BOTH, "/predict/batch", _flagged(starter(2))),
        Route.http(BOTH, "/predict/multiple", _flagged(multiple)),
        Route.http("GET", "/jobs", _flagged(list_jobs)),
        Route.http("GET", "/jobs/{job_id}", _flagged(get_job)),
        Route.http("DELETE", "/jobs/{job_id}", _flagged(cancel_job)),
    ]
    return HttpApp(
        routes,
        token=token,
        guard=guard,
        max_body_size=max_body_size,
        startup=service.start,
        shutdown=service.stop,
    )
