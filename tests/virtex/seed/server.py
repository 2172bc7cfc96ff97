# ruff: noqa
# fmt: off
# A code block of ../shared/seeds/virtex.md verbatim; only its import lines changed.
# server.py

from servekit import http_server; from handlers import request_handler_x

app = http_server(
    name='service_x',
    handler=request_handler_x,
    max_batch_size=128,
    max_time_on_queue=0.01
)
