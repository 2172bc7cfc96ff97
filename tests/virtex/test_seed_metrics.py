"""The README's Prometheus examples: scrape (one port per worker) and push (a real gateway)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from servekit import HttpClient, HttpMessage, http_server
from servekit.codecs import encode_pil
from servekit.errors import BadRequest
from servekit.server.virtex_metrics import SCRAPE_PORT_SPAN
from support.servers import LiveServer
from support.virtex_seed import (
    SEED_PUSH_PORT,
    free_port,
    run_seed,
    start_gunicorn,
    stop_gunicorn,
    wait_until,
)

SEED_SCRAPE_PORT = 9090  # the port the README's scrape example names


def _post(url: str, requests: int) -> None:
    image = Image.new("RGB", (4, 4), (9, 8, 7))
    with HttpClient(url) as client:
        for _ in range(requests):
            client.post(HttpMessage(data=[image]).encode(encode_pil))


def _samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample called ``name`` in a Prometheus text page, keyed by its labels."""
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def _requests_total(text: str) -> float:
    return sum(_samples(text, "servekit_requests_total").values())


def test_seed_scrape_example_serves_metrics_on_the_first_free_port_from_9090(
    seed_path: Path,
) -> None:
    app = run_seed("server_scrape.py")["app"]
    live = LiveServer(app).start()
    try:
        assert app.scrape_server is not None
        port = app.scrape_server.port
        assert SEED_SCRAPE_PORT <= port < SEED_SCRAPE_PORT + SCRAPE_PORT_SPAN
        _post(live.url, 3)
        page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert _samples(page, "servekit_requests_total") == {
            frozenset({("model", "service_x")}): 3.0
        }
    finally:
        live.stop()
    with socket.socket() as sock:  # the port is given back at shutdown
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HTTP servers bind
        sock.bind(("127.0.0.1", port))


def test_a_taken_metrics_port_is_skipped_for_the_next(seed_path: Path) -> None:
    from handlers import request_handler_x

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    first = taken.getsockname()[1]
    app = http_server(
        name="skipper", handler=request_handler_x, metrics_mode="scrape", metrics_port=first
    )
    live = LiveServer(app).start()
    try:
        assert app.scrape_server is not None and app.scrape_server.port > first
    finally:
        live.stop()
        taken.close()


def test_seed_scrape_example_under_gunicorn_gives_each_worker_its_own_port(
    seed_path: Path,
) -> None:
    server = start_gunicorn("server_scrape:app", cwd=seed_path, workers=2)
    try:
        workers = server.workers()
        server_port = int(server.url.rsplit(":", 1)[1])

        def metrics_ports() -> dict[int, int] | None:
            ports = {}
            for worker in workers:
                own = server.listening_ports(worker) - {server_port}
                if len(own) != 1:
                    return None
                ports[worker.pid] = own.pop()
            return ports

        ports = wait_until(metrics_ports, what="a metrics port in each worker")
        assert len(set(ports.values())) == 2
        block = range(SEED_SCRAPE_PORT, SEED_SCRAPE_PORT + SCRAPE_PORT_SPAN)
        assert all(port in block for port in ports.values()), ports
        _post(server.url, 20)
        pages = [httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=5).text for p in ports.values()]
        # each worker counts only what it answered; together, every request
        assert sum(_requests_total(page) for page in pages) == 20
    finally:
        stop_gunicorn(server)


def _gateway_page(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def _pushed_requests(port: int) -> dict[str, float]:
    """``instance`` → servekit_requests_total pushed by it under job ``service_x``."""
    return {
        dict(labels)["instance"]: value
        for labels, value in _samples(_gateway_page(port), "servekit_requests_total").items()
        if dict(labels).get("job") == "service_x"
    }


def _seed_push_source(port: int) -> dict[str, str]:
    """No change when the gateway got the README's port 9091; else point the example at it."""
    return {} if port == SEED_PUSH_PORT else {"metrics_port=9091": f"metrics_port={port}"}


def test_seed_push_example_pushes_to_a_real_pushgateway(seed_path: Path, pushgateway: int) -> None:
    app = run_seed("server_push.py", **_seed_push_source(pushgateway))["app"]
    live = LiveServer(app).start()
    instance = f"{socket.gethostname()}:{os.getpid()}"
    try:
        _post(live.url, 5)
        wait_until(
            lambda: _pushed_requests(pushgateway).get(instance) == 5.0,
            what="5 requests in the Pushgateway",
        )
        assert app.pusher is not None and app.pusher.failures == 0
    finally:
        live.stop()
    page = _gateway_page(pushgateway)
    assert _samples(page, "push_failure_time_seconds") == {
        frozenset({("instance", instance), ("job", "service_x")}): 0.0
    }


def test_seed_push_example_under_gunicorn_pushes_one_group_per_worker(
    seed_path: Path, pushgateway: int, tmp_path: Path
) -> None:
    source = (seed_path / "server_push.py").read_text()
    for old, new in _seed_push_source(pushgateway).items():
        source = source.replace(old, new)
    (tmp_path / "server_push.py").write_text(source)
    server = start_gunicorn("server_push:app", cwd=tmp_path, workers=2)
    try:
        host = socket.gethostname()
        instances = {f"{host}:{worker.pid}" for worker in server.workers()}
        _post(server.url, 20)

        def all_pushed() -> bool:
            pushed = _pushed_requests(pushgateway)
            return set(pushed) == instances and sum(pushed.values()) == 20

        wait_until(all_pushed, what="both workers' groups, 20 requests in all")
    finally:
        stop_gunicorn(server)


def test_a_gateway_that_is_down_is_logged_and_serving_goes_on(
    seed_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from handlers import request_handler_x

    down = free_port()
    app = http_server(
        name="pushless",
        handler=request_handler_x,
        metrics_host="http://127.0.0.1",  # the README's default form, with a scheme
        metrics_port=down,
        metrics_mode="push",
        metrics_interval=0.01,
    )
    caplog.set_level(logging.WARNING, logger="servekit.server")
    live = LiveServer(app).start()
    try:
        wait_until(lambda: app.pusher is not None and app.pusher.failures >= 5, what="5 failures")
        _post(live.url, 2)  # serving is unaffected
    finally:
        live.stop()
    warnings = [r.getMessage() for r in caplog.records if "Pushgateway" in r.getMessage()]
    assert len(warnings) == 1, warnings  # repeated failures are not logged each time
    assert f"http://127.0.0.1:{down}" in warnings[0]


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"metrics_mode": "sometimes"}, "metrics_mode must be one of"),
        ({"metrics_port": 70000}, "metrics_port must be a TCP port"),
        ({"metrics_mode": "push", "metrics_interval": 0}, "metrics_interval must be > 0"),
    ],
)
def test_bad_metrics_arguments_are_refused_naming_the_argument(
    seed_path: Path, keywords: dict[str, object], message: str
) -> None:
    from handlers import request_handler_x

    with pytest.raises(BadRequest, match=message):
        http_server(name="x", handler=request_handler_x, **keywords)  # type: ignore[arg-type]
