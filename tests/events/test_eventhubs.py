"""Event Hubs settings mapped onto its Kafka endpoint (no Azure is reachable here)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from servekit.events.eventhubs import event_hubs_kafka_config, event_hubs_sink
from servekit.events.kafka_sink import KafkaSink

CONN = (
    "Endpoint=sb://my-ns.servicebus.windows.net/;SharedAccessKeyName=send;"
    "SharedAccessKey=c2VjcmV0;EntityPath=structured"
)


def test_a_connection_string_maps_to_sasl_plain_on_port_9093() -> None:
    config = event_hubs_kafka_config(conn_str=CONN)
    assert config["bootstrap.servers"] == "my-ns.servicebus.windows.net:9093"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "PLAIN"
    assert config["sasl.username"] == "$ConnectionString"
    assert config["sasl.password"] == CONN


def test_the_sink_is_named_without_the_secret() -> None:
    sink = event_hubs_sink(conn_str=CONN)
    assert isinstance(sink, KafkaSink)
    assert sink.name == "eventhubs://my-ns.servicebus.windows.net"
    assert sink.config["sasl.password"] == CONN


def test_a_connection_string_without_endpoint_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="Endpoint=sb://"):
        event_hubs_kafka_config(conn_str="SharedAccessKeyName=a;SharedAccessKey=b")
    with pytest.raises(ValueError, match=r"connection string .* or a namespace host name"):
        event_hubs_kafka_config()


def test_managed_identity_without_azure_identity_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install servekit\[azure\]"):
        event_hubs_kafka_config(hostname="my-ns.servicebus.windows.net", client_id="uai")


def test_managed_identity_maps_to_oauthbearer_with_a_token_for_the_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str | None, str]] = []

    class ManagedIdentityCredential:  # azure-identity's interface; Azure is not reachable
        def __init__(self, client_id: str | None = None) -> None:
            self.client_id = client_id

        def get_token(self, scope: str) -> Any:
            asked.append((self.client_id, scope))
            return types.SimpleNamespace(token="tok", expires_on=1_900_000_000)

    module = types.ModuleType("azure.identity")
    module.ManagedIdentityCredential = ManagedIdentityCredential  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.identity", module)
    config = event_hubs_kafka_config(hostname="my-ns", client_id="uai")
    assert config["bootstrap.servers"] == "my-ns.servicebus.windows.net:9093"
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    assert config["oauth_cb"]("") == ("tok", 1_900_000_000.0)
    assert asked == [("uai", "https://my-ns.servicebus.windows.net/.default")]
