"""Azure Event Hubs as a destination: its Kafka endpoint, configured for librdkafka.

Two ways to sign in, as pyraisdk offers:

- a connection string ``Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=…;
  SharedAccessKey=…[;EntityPath=…]``: SASL PLAIN with the user ``$ConnectionString`` and the
  connection string as the password;
- a namespace host name and a managed identity's client id: SASL OAUTHBEARER with tokens from
  ``azure.identity.ManagedIdentityCredential`` (the ``servekit[azure]`` extra, imported only
  for this).

The topic of each record is the message's stream: the event hub's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servekit.events.kafka_sink import KafkaSink

__all__ = ["event_hubs_kafka_config", "event_hubs_sink", "namespace_host"]

KAFKA_PORT = 9093
DOMAIN = ".servicebus.windows.net"
# Microsoft's recommendations for librdkafka on Event Hubs; one request in flight keeps the
# order of retried records without relying on the idempotent producer
EVENT_HUBS_DEFAULTS: dict[str, Any] = {
    "security.protocol": "SASL_SSL",
    "socket.keepalive.enable": True,
    "metadata.max.age.ms": 180_000,
    "enable.idempotence": False,
    "max.in.flight.requests.per.connection": 1,
}


def _connection_fields(conn_str: str) -> dict[str, str]:
    fields = {}
    for part in conn_str.strip().split(";"):
        if part.strip():
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(
                    f"Event Hubs connection string: {name.strip()!r} is not NAME=VALUE"
                )
            fields[name.strip().lower()] = value.strip()
    return fields


def namespace_host(value: str) -> str:
    """``sb://ns.servicebus.windows.net/``, ``ns.servicebus.windows.net`` or ``ns`` → the host."""
    host = value.strip().removeprefix("sb://").removeprefix("https://").split("/")[0]
    host = host.split(":")[0]
    if not host:
        raise ValueError(f"Event Hubs namespace {value!r}: no host name in it")
    return host if "." in host else host + DOMAIN


def _token_callback(hostname: str, client_id: str | None) -> Callable[[str], tuple[str, float]]:
    try:
        from azure.identity import ManagedIdentityCredential  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ImportError(
            "Event Hubs with a managed identity (eh_hostname + client_id) needs azure-identity:"
            " pip install servekit[azure]"
        ) from exc
    credential = ManagedIdentityCredential(client_id=client_id)
    scope = f"https://{hostname}/.default"

    def oauth_cb(_config: str) -> tuple[str, float]:
        token = credential.get_token(scope)
        return token.token, float(token.expires_on)

    return oauth_cb


def event_hubs_kafka_config(
    conn_str: str | None = None, hostname: str | None = None, client_id: str | None = None
) -> dict[str, Any]:
    """librdkafka settings for an Event Hubs namespace: by connection string (SASL PLAIN) or
    by host name and managed identity (OAUTHBEARER)."""
    if conn_str:
        fields = _connection_fields(conn_str)
        endpoint = fields.get("endpoint")
        if not endpoint:
            raise ValueError(
                "Event Hubs connection string: no Endpoint=sb://<namespace>.servicebus.windows.net/"
            )
        host = namespace_host(endpoint)
        return {
            **EVENT_HUBS_DEFAULTS,
            "bootstrap.servers": f"{host}:{KAFKA_PORT}",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "$ConnectionString",
            "sasl.password": conn_str.strip(),
        }
    if hostname:
        host = namespace_host(hostname)
        config = {
            **EVENT_HUBS_DEFAULTS,
            "bootstrap.servers": f"{host}:{KAFKA_PORT}",
            "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": _token_callback(host, client_id),
        }
        if client_id:
            config["client.id"] = client_id
        return config
    raise ValueError(
        "Event Hubs needs a connection string (eh_conn_str / EVENTHUB_CONN_STRING) or a"
        " namespace host name with a managed identity (eh_hostname / EVENTHUB_NAMESPACE and"
        " client_id / UAI_CLIENT_ID)"
    )


def event_hubs_sink(
    conn_str: str | None = None,
    hostname: str | None = None,
    client_id: str | None = None,
    **options: Any,
) -> KafkaSink:
    """A :class:`KafkaSink` on an Event Hubs namespace (``options`` go to :class:`KafkaSink`)."""
    config = event_hubs_kafka_config(conn_str, hostname, client_id)
    host = str(config["bootstrap.servers"]).rsplit(":", 1)[0]
    return KafkaSink(config, name=f"eventhubs://{host}", **options)
