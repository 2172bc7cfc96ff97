"""servekit.settings: one name and one unit per knob; arguments, then SERVEKIT_*, then defaults."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from servekit import Model
from servekit.handler import RequestHandler
from servekit.server import App
from servekit.server.message_app import http_server
from servekit.settings import (
    BatchSettings,
    InvalidSetting,
    QueueSettings,
    ServerSettings,
    UnknownSetting,
)
from support.servers import LiveServer


class Echo(Model):
    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


class Instant(Echo):
    max_latency_ms = 0


class Passthrough(RequestHandler):
    def process_request(self, data: list[Any]) -> list[Any]:
        return data

    def run_inference(self, model_input: list[Any]) -> list[Any]:
        return model_input

    def process_response(self, model_output: list[Any]) -> list[Any]:
        return model_output


def latency(app: App) -> float:
    return app.registry.get("echo").batcher.policy.max_latency


# ------------------------------------------------------------------ order and explicit zero
def test_arguments_beat_environment_beat_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BatchSettings().max_batch_size == 32
    monkeypatch.setenv("SERVEKIT_MAX_BATCH_SIZE", "7")
    assert BatchSettings().max_batch_size == 7
    assert BatchSettings(max_batch_size=3).max_batch_size == 3


def test_latency_is_milliseconds_everywhere_and_seconds_only_inside_the_batcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVEKIT_MAX_LATENCY_MS", "20")
    settings = BatchSettings()
    assert settings.max_latency_ms == 20 and settings.policy().max_latency == 0.02


def test_a_model_attribute_of_zero_latency_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEKIT_MAX_LATENCY_MS", "50")
    assert Instant().batch_policy().max_latency == 0
    assert Echo(max_latency_ms=0).batch_policy().max_latency == 0


def test_an_app_override_of_zero_latency_beats_the_model_and_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVEKIT_MAX_LATENCY_MS", "50")

    class Slow(Echo):
        max_latency_ms = 30

    assert latency(App([Slow()], max_latency_ms=0)) == 0
    assert latency(App([Slow()])) == 0.03
    assert latency(App([Echo()])) == 0.05


def test_http_server_max_time_on_queue_zero_is_honoured() -> None:
    app = http_server("echo", Passthrough(), max_time_on_queue=0)
    assert app.runtime.batcher.policy.max_latency == 0
    assert (
        http_server(
            "echo", Passthrough(), max_time_on_queue=0.02
        ).runtime.batcher.policy.max_latency
        == 0.02
    )


def test_an_explicit_zero_queue_length_means_unbounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEKIT_QUEUE_MAX_LENGTH", "9")
    assert QueueSettings(max_length=0).max_length == 0


# ------------------------------------------------------------------ misspelt names
def test_a_misspelt_setting_is_named_with_the_closest_valid_one() -> None:
    with pytest.raises(UnknownSetting, match=r"'max_batchsize'.*did you mean 'max_batch_size'"):
        BatchSettings(max_batchsize=4)
    with pytest.raises(TypeError, match=r"'tokn'.*did you mean 'token'"):
        ServerSettings(tokn="x")


def test_a_misspelt_app_keyword_is_named_with_the_closest_valid_one() -> None:
    with pytest.raises(TypeError, match=r"'max_latancy_ms'.*did you mean 'max_latency_ms'"):
        App([Echo()], max_latancy_ms=0)
    with pytest.raises(TypeError, match=r"'queue_urll'.*did you mean 'queue_url'"):
        App([Echo()], queue_urll="sqlite://:memory:")


@pytest.mark.parametrize(
    ("keyword", "suggestion"),
    [
        ("max_batchsize", "max_batch_size"),
        ("max_latency", "max_latency_ms"),
        ("max_batch_interval", "max_latency_ms"),
        ("idle_batchsize", "idle_batch_size"),
        ("instance", "instances"),
    ],
)
def test_a_model_keyword_close_to_a_batching_setting_is_refused(
    keyword: str, suggestion: str
) -> None:
    with pytest.raises(TypeError, match=f"did you mean {suggestion}"):
        Echo(**{keyword: 4})


def test_other_model_keywords_are_user_params() -> None:
    model = Echo(threshold=0.5, batch_size=8, max_batch_size=4)
    assert model.params == {"threshold": 0.5, "batch_size": 8}
    assert model.batch_policy().max_batch_size == 4


# ------------------------------------------------------------------ invalid values
def test_an_invalid_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEKIT_MAX_LATENCY_MS", "fast")
    with pytest.raises(InvalidSetting, match="environment variable SERVEKIT_MAX_LATENCY_MS='fast'"):
        BatchSettings()
    monkeypatch.setenv("SERVEKIT_PORT", "http")
    with pytest.raises(ValueError, match="SERVEKIT_PORT='http'"):
        ServerSettings()
    monkeypatch.setenv("SERVEKIT_QUEUE_LEASE", "-1")
    with pytest.raises(ValueError, match=r"SERVEKIT_QUEUE_LEASE='-1'.*greater than 0"):
        QueueSettings()


def test_an_explicit_value_beats_an_invalid_environment_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVEKIT_MAX_LATENCY_MS", "fast")
    assert BatchSettings(max_latency_ms=1).max_latency_ms == 1


def test_an_invalid_argument_names_the_setting_and_the_model() -> None:
    with pytest.raises(InvalidSetting, match=r"max_batch_size=0: .*greater than or equal to 1"):
        BatchSettings(max_batch_size=0)
    with pytest.raises(InvalidSetting, match=r"model 'echo'.*max_latency_ms=-1"):
        Echo(max_latency_ms=-1).batch_policy()
    with pytest.raises(InvalidSetting, match="idle_batch_size \\(8\\) must not exceed"):
        BatchSettings(max_batch_size=4, idle_batch_size=8)


def test_the_retired_seconds_variable_is_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVEKIT_MAX_LATENCY", "0.01")
    with pytest.raises(InvalidSetting, match="SERVEKIT_MAX_LATENCY_MS, in milliseconds"):
        BatchSettings()


# ------------------------------------------------------------------ server settings
def test_the_token_is_a_secret() -> None:
    settings = ServerSettings(token="hunter2")
    assert "hunter2" not in repr(settings) and settings.token_value == "hunter2"
    assert ServerSettings(token="").token_value is None


def test_app_takes_a_settings_object_and_keyword_overrides() -> None:
    app = App([Echo()], settings=ServerSettings(max_body_size=10, drain_timeout=0), token="t")
    assert (app.max_body_size, app.drain_timeout, app.token) == (10, 0, "t")


def test_app_reads_the_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEKIT_TOKEN", "envtok")
    live = LiveServer(App([Echo()])).start()
    try:
        with httpx.Client(base_url=live.url, timeout=10) as client:
            assert client.get("/v2").status_code == 401
            assert client.get("/v2", headers={"Authorization": "wrong"}).status_code == 401
            authorized = {"Authorization": "Bearer envtok"}
            assert client.get("/v2", headers=authorized).status_code == 200
    finally:
        live.stop()


def test_http_server_reads_the_body_limit_like_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEKIT_MAX_BODY_SIZE", "2048")
    assert http_server("echo", Passthrough()).max_body_size == 2048
    assert http_server("echo", Passthrough(), max_body_size=100).max_body_size == 100
