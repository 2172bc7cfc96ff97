# ruff: noqa
# fmt: off
# A code block of ../shared/seeds/virtex.md verbatim; only its import lines changed.
from servekit import http_server; from handlers import request_handler_x

app = http_server(
    name='service_x',
    handler=request_handler_x,
    metrics_host='127.0.0.1',
    metrics_port=9091,
    metrics_mode='push',
    metrics_interval=0.01
)
