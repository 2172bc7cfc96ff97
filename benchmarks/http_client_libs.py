"""Round-trip requests/s of Python HTTP clients against a trivial local echo server.

Why servekit's clients have their own transport: run ``python benchmarks/http_client_libs.py``.
A uvicorn (uvloop + httptools) echo server runs in a subprocess on a free loopback port; each
client sends sequential keep-alive POSTs of a small and a large body. Rounds interleave the
clients, so machine noise hits all of them alike; it prints the median rate and the median
client CPU per request (the steadier figure on a busy machine). Clients not installed are
skipped. Bounded: ``--rounds`` x clients x (2000 small + 300 large requests).
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

SERVER = """
import sys, uvicorn
async def app(scope, receive, send):
    body, more = b"", True
    while more:
        m = await receive()
        body += m.get("body", b"")
        more = m.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, timeout_keep_alive=300)
"""
HEADERS = {"Content-Type": "application/octet-stream"}
Send = Callable[[bytes], None]


def servekit_transport(url: str) -> Send:
    from servekit.client import Transport

    transport = Transport(url)
    return lambda body: _check(transport.request("POST", "/", body, HEADERS).body, body)


def raw_http_client(url: str) -> Send:
    conn = http.client.HTTPConnection(url.removeprefix("http://"))

    def send(body: bytes) -> None:
        conn.request("POST", "/", body=body, headers=HEADERS)
        _check(conn.getresponse().read(), body)

    return send


def urllib3_pool(url: str) -> Send:
    import urllib3

    pool = urllib3.connection_from_url(url, maxsize=4)
    return lambda body: _check(
        pool.urlopen("POST", "/", body=body, headers=HEADERS, retries=False).data, body
    )


def httpx_client(url: str) -> Send:
    import httpx

    client = httpx.Client(base_url=url)
    return lambda body: _check(client.post("/", content=body, headers=HEADERS).content, body)


def geventhttpclient(url: str) -> Send:
    from geventhttpclient import HTTPClient
    from geventhttpclient.url import URL

    client = HTTPClient.from_url(URL(url), concurrency=1, network_timeout=60)
    return lambda body: _check(client.post("/", body=body, headers=HEADERS).read(), body)


CLIENTS = {
    "servekit Transport": servekit_transport,
    "http.client keep-alive": raw_http_client,
    "urllib3 HTTPConnectionPool": urllib3_pool,
    "httpx.Client": httpx_client,
    "geventhttpclient (tritonclient.http)": geventhttpclient,
}


def _check(got: bytes, sent: bytes) -> None:
    if len(got) != len(sent):
        raise AssertionError(f"echo of {len(sent)} bytes came back as {len(got)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(port)
        senders = {}
        for name, make in CLIENTS.items():
            try:
                senders[name] = make(url)
            except ImportError:
                print(f"skipped {name}: not installed")
        for size, count in ((64, 2000), (256 * 1024, 300)):
            _measure(senders, b"x" * size, count, args.rounds)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _measure(senders: dict[str, Send], body: bytes, count: int, rounds: int) -> None:
    for send in senders.values():
        for _ in range(100):
            send(body)
    rates: dict[str, list[float]] = {name: [] for name in senders}
    cpu: dict[str, list[float]] = {name: [] for name in senders}
    for _ in range(rounds):
        for name, send in senders.items():
            wall, proc = time.perf_counter(), time.process_time()
            for _ in range(count):
                send(body)
            rates[name].append(count / (time.perf_counter() - wall))
            cpu[name].append((time.process_time() - proc) / count * 1e6)
    print(f"\nbody {len(body)} bytes, {rounds} rounds of {count} sequential requests")
    print(f"{'client':38s} {'median req/s':>12s} {'client CPU us/req':>18s}")
    for name in senders:
        rate, us = statistics.median(rates[name]), statistics.median(cpu[name])
        print(f"{name:38s} {rate:12.0f} {us:18.0f}")


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the echo server did not start")


if __name__ == "__main__":
    main()
