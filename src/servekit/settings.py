"""One typed settings object per concern: batching, server, queue.

Every knob has one name and one unit. Values come from explicit arguments (constructor
keywords, CLI flags), then ``SERVEKIT_*`` environment variables, then the defaults below:

==========================  ====================================  ==============  =========
setting                     environment variable                  default         unit
==========================  ====================================  ==============  =========
``max_batch_size``          ``SERVEKIT_MAX_BATCH_SIZE``           32              items
``max_latency_ms``          ``SERVEKIT_MAX_LATENCY_MS``           5.0             ms
``idle_batch_size``         ``SERVEKIT_IDLE_BATCH_SIZE``          1               items
``max_queue_size``          ``SERVEKIT_MAX_QUEUE_SIZE``           4096            items
``instances``               ``SERVEKIT_INSTANCES``                1               batches
``dispatch``                ``SERVEKIT_DISPATCH``                 idle            mode
``inline``                  ``SERVEKIT_INLINE``                   auto            mode
``host``                    ``SERVEKIT_HOST``                     127.0.0.1
``port``                    ``SERVEKIT_PORT``                     8000
``workers``                 ``SERVEKIT_WORKERS``                  1               processes
``log_level``               ``SERVEKIT_LOG_LEVEL``                info
``access_log``              ``SERVEKIT_ACCESS_LOG``               false
``token``                   ``SERVEKIT_TOKEN``                    none (open)
``max_body_size``           ``SERVEKIT_MAX_BODY_SIZE``            67108864        bytes
``public_metrics``          ``SERVEKIT_PUBLIC_METRICS``           false
``metrics``                 ``SERVEKIT_METRICS``                  true
``drain_timeout``           ``SERVEKIT_DRAIN_TIMEOUT``            30.0            s
``tcp_port``                ``SERVEKIT_TCP_PORT``                 none (off)
``tcp_host``                ``SERVEKIT_TCP_HOST``                 ``host``
``tcp_max_frame_size``      ``SERVEKIT_TCP_MAX_FRAME_SIZE``       16777216        bytes
``tcp_frame_timeout``       ``SERVEKIT_TCP_FRAME_TIMEOUT``        30.0            s
``tcp_idle_timeout``        ``SERVEKIT_TCP_IDLE_TIMEOUT``         300.0           s
``tcp_max_inflight``        ``SERVEKIT_TCP_MAX_INFLIGHT``         64              requests
``tcp_max_buffer``          ``SERVEKIT_TCP_MAX_BUFFER``           33554432        bytes
``tcp_max_total_buffer``    ``SERVEKIT_TCP_MAX_TOTAL_BUFFER``     134217728       bytes
``tcp_max_connections``     ``SERVEKIT_TCP_MAX_CONNECTIONS``      1024            connections
``grpc_port``               ``SERVEKIT_GRPC_PORT``                none (off)
``grpc_host``               ``SERVEKIT_GRPC_HOST``                ``host``
``freeze_gc``               ``SERVEKIT_FREEZE_GC``                true
``queue``                   ``SERVEKIT_QUEUE``                    false
``queue_window``            ``SERVEKIT_QUEUE_WINDOW``             64              records
``eas_date_skew``           ``SERVEKIT_EAS_DATE_SKEW``            900.0           s
``eas_date_any_zone``       ``SERVEKIT_EAS_DATE_ANY_ZONE``        true
``eas_replay_cache``        ``SERVEKIT_EAS_REPLAY_CACHE``         100000          signatures
``eas_replay_grace``        ``SERVEKIT_EAS_REPLAY_GRACE``         1.0             s
``max_header_line_size``    ``SERVEKIT_MAX_HEADER_LINE_SIZE``     8192            bytes
``max_header_size``         ``SERVEKIT_MAX_HEADER_SIZE``          32768           bytes
``max_headers``             ``SERVEKIT_MAX_HEADERS``              100             fields
``header_timeout``          ``SERVEKIT_HEADER_TIMEOUT``           10.0            s
``body_timeout``            ``SERVEKIT_BODY_TIMEOUT``             30.0            s
``max_connections``         ``SERVEKIT_MAX_CONNECTIONS``          1024            connections
``discovery_url``           ``SERVEKIT_DISCOVERY_URL``            none (off)
``advertise_address``       ``SERVEKIT_ADVERTISE_ADDRESS``        ``host:port``
``discovery_weight``        ``SERVEKIT_DISCOVERY_WEIGHT``         100
``discovery_ttl``           ``SERVEKIT_DISCOVERY_TTL``            10.0            s
``discovery_grace``         ``SERVEKIT_DISCOVERY_GRACE``          3.5             s
``queue_url``               ``SERVEKIT_QUEUE_URL``                sqlite://./servekit-queues
``queue_max_length``        ``SERVEKIT_QUEUE_MAX_LENGTH``         0 (unbounded)   records
``queue_max_payload_bytes`` ``SERVEKIT_QUEUE_MAX_PAYLOAD_BYTES``  8388608         bytes
``queue_lease``             ``SERVEKIT_QUEUE_LEASE``              10.0            s
``request_log``             ``SERVEKIT_REQUEST_LOG``              off             mode
``request_log_topic``       ``SERVEKIT_REQUEST_LOG_TOPIC``        servekit-requests
``request_log_sample``      ``SERVEKIT_REQUEST_LOG_SAMPLE``       1.0             rate 0..1
``request_log_batch``       ``SERVEKIT_REQUEST_LOG_BATCH``        1               records
==========================  ====================================  ==============  =========

``request_log`` is ``off``, ``all``, ``request`` or ``response``. Event settings
(:class:`EventSettings`, one bus per process) are flags and ``App`` keywords with an
``events_`` prefix:

=============================  ======================================  ===============  =====
setting                        environment variable                    default          unit
=============================  ======================================  ===============  =====
``events_url``                 ``SERVEKIT_EVENTS_URL``                 stdout
``events_engine``              ``SERVEKIT_EVENTS_ENGINE``              true
``events_buffer_size``         ``SERVEKIT_EVENTS_BUFFER_SIZE``         100000           events
``events_spool_dir``           ``SERVEKIT_EVENTS_SPOOL_DIR``           none (temp dir)
``events_spool_max_bytes``     ``SERVEKIT_EVENTS_SPOOL_MAX_BYTES``     268435456        bytes
``events_exit_flush_timeout``  ``SERVEKIT_EVENTS_EXIT_FLUSH_TIMEOUT``  5.0              s
=============================  ======================================  ===============  =====

A misspelt keyword is a ``TypeError`` naming the closest valid setting; an invalid value is a
:class:`InvalidSetting` (a ``ValueError``) naming the setting, or the variable it came from.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from servekit.batching.policy import BatchPolicy

__all__ = [
    "BatchSettings",
    "EventSettings",
    "InvalidSetting",
    "JobSettings",
    "QueueSettings",
    "ServerSettings",
    "UnknownSetting",
    "suggest",
]

ENV_PREFIX = "SERVEKIT_"
KiB = 1024
MiB = 1024 * 1024

_S = TypeVar("_S", bound="_Settings")
_D = TypeVar("_D")


class UnknownSetting(TypeError):
    """A keyword or flag that names no setting (the message suggests the closest one)."""


class InvalidSetting(ValueError):
    """A setting's value is out of range or of the wrong type."""


def suggest(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_names(kind: str, given: Iterable[str], valid: Iterable[str]) -> None:
    """Raise :class:`UnknownSetting` for the first name of ``given`` not in ``valid``."""
    known = set(valid)
    for name in given:
        if name not in known:
            raise UnknownSetting(f"unknown {kind} setting {name!r}{suggest(name, known)}")


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        env_ignore_empty=True,
        validate_default=True,
    )
    _kind: ClassVar[str] = "servekit"

    def __init__(self, **values: Any) -> None:
        check_names(
            self._kind, (k for k in values if not k.startswith("_")), type(self).model_fields
        )
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise InvalidSetting(_describe(type(self), exc, values)) from None

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets ``field``."""
        return str(cls.model_config.get("env_prefix", "")) + field.upper()

    def replace(self: _S, **changes: Any) -> _S:
        """A copy with ``changes`` applied and validated."""
        return type(self)(**{**dict(self), **changes})


def _describe(cls: type[_Settings], exc: ValidationError, given: Mapping[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        env = cls.env_name(field) if field else ""
        raw = _environ_get(env) if field and field not in given else None
        if raw is not None:
            problems.append(f"environment variable {env}={raw!r}: {message}")
        elif field:
            problems.append(f"{field}={error['input']!r}: {message}")
        else:
            problems.append(message)
    return "invalid setting: " + "; ".join(problems)


def _environ_get(name: str) -> str | None:
    # pydantic-settings matches names case-insensitively; so does this lookup
    for key, value in os.environ.items():
        if key.upper() == name and value != "":
            return value
    return None


class BatchSettings(_Settings):
    """When the batcher dispatches and how much it holds, per model."""

    _kind: ClassVar[str] = "batching"

    max_batch_size: int = Field(32, ge=1, description="most items (rows) in one predict call")
    max_latency_ms: float = Field(
        5.0,
        ge=0,
        allow_inf_nan=False,
        description="milliseconds the oldest queued item may wait for a batch to fill",
    )
    idle_batch_size: int = Field(
        1,
        ge=1,
        description="when a model instance is free, dispatch at once from this many items",
    )
    max_queue_size: int = Field(
        4096, ge=1, description="most items waiting per model; beyond it new work gets 429"
    )
    instances: int = Field(1, ge=1, description="batches that may run at once per model")
    dispatch: Literal["adaptive", "idle"] = Field(
        "idle",
        description="idle: a free model takes what is queued at once; adaptive: it may wait"
        " (within max_latency_ms) while more items are expected soon enough to pay off",
    )
    inline: Literal["auto", "on", "off"] = Field(
        "auto",
        description="where predict runs: off = its worker thread; on = the event loop (no"
        " thread hop; while predict runs nothing else is served); auto = the thread until"
        " batches prove to take microseconds, then the loop (back for good if one is slow)",
    )

    @field_validator("inline", mode="before")
    @classmethod
    def _inline_words(cls, value: Any) -> Any:
        words = {True: "on", False: "off", "true": "on", "false": "off", "1": "on", "0": "off"}
        key = value.lower() if isinstance(value, str) else value
        return words.get(key, value) if isinstance(key, (bool, str)) else value

    @model_validator(mode="before")
    @classmethod
    def _no_retired_variable(cls, values: Any) -> Any:
        # it held seconds: ignoring it silently would change a deployment's latency 1000-fold
        if _environ_get(ENV_PREFIX + "MAX_LATENCY") is not None:
            raise ValueError(
                f"{ENV_PREFIX}MAX_LATENCY (seconds) is no longer read:"
                f" set {ENV_PREFIX}MAX_LATENCY_MS, in milliseconds"
            )
        return values

    @model_validator(mode="after")
    def _idle_fits(self) -> BatchSettings:
        if self.idle_batch_size > self.max_batch_size:
            raise ValueError(
                f"idle_batch_size ({self.idle_batch_size}) must not exceed max_batch_size"
                f" ({self.max_batch_size})"
            )
        return self

    @property
    def max_latency(self) -> float:
        """``max_latency_ms`` in seconds."""
        return self.max_latency_ms / 1000.0

    def policy(self) -> BatchPolicy:
        """What the batcher consumes (latency in seconds)."""
        from servekit.batching.policy import BatchPolicy

        return BatchPolicy(
            max_batch_size=self.max_batch_size,
            max_latency=self.max_latency,
            idle_batch_size=self.idle_batch_size,
            max_queue_size=self.max_queue_size,
            instances=self.instances,
            dispatch=self.dispatch,
            inline=self.inline,
        )


LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
RequestLogMode = Literal["off", "all", "request", "response"]


class ServerSettings(_Settings):
    """The HTTP server and its doors."""

    _kind: ClassVar[str] = "server"

    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 for all interfaces")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port")
    workers: int = Field(1, ge=1, description="server processes sharing the port")
    log_level: LogLevel = Field("info", description="uvicorn log level")
    access_log: bool = Field(False, description="log one line per HTTP request (at info level)")
    token: SecretStr | None = Field(
        None,
        description="require this token in the Authorization header to serve data",
    )
    max_body_size: int = Field(64 * MiB, ge=1, description="largest request body, in bytes")
    public_metrics: bool = Field(
        False, description="serve GET /metrics without the token (health routes always are)"
    )
    metrics: bool = Field(
        True, description="keep Prometheus histograms and per-status counts (GET /metrics)"
    )
    drain_timeout: float = Field(
        30.0, ge=0, allow_inf_nan=False, description="seconds shutdown waits for queued work"
    )
    tcp_port: int | None = Field(
        None, ge=0, le=65535, description="also serve length-prefixed JSON on this TCP port"
    )
    tcp_host: str | None = Field(
        None, description="address of the TCP door; none: the same as host"
    )
    tcp_max_frame_size: int = Field(
        16 * MiB, ge=1, le=2**32 - 1, description="largest TCP frame (request or reply), in bytes"
    )
    tcp_frame_timeout: float = Field(
        30.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds a TCP frame may take to arrive whole, from its first byte"
        " (while the server holds back reading, the clock stops)",
    )
    tcp_idle_timeout: float = Field(
        300.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds a TCP connection may stay silent with nothing in flight, or leave"
        " its replies unread, before it is closed",
    )
    tcp_max_inflight: int = Field(
        64, ge=1, description="requests in flight per TCP connection; beyond, it is not read"
    )
    tcp_max_buffer: int = Field(
        32 * MiB,
        ge=1,
        description="bytes of frames one TCP connection may hold (being read or in flight);"
        " at least tcp_max_frame_size",
    )
    tcp_max_total_buffer: int = Field(
        128 * MiB,
        ge=1,
        description="bytes of frames all TCP connections together may hold; at least"
        " tcp_max_frame_size",
    )
    tcp_max_connections: int = Field(
        1024, ge=1, description="open TCP connections; beyond, a new one gets a 503 frame"
    )
    grpc_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="also serve the v2 protocol over gRPC on this port (needs servekit[grpc])",
    )
    grpc_host: str | None = Field(
        None, description="address of the gRPC door; none: the same as host"
    )
    freeze_gc: bool = Field(
        True, description="move what exists once models loaded out of the GC's scans"
    )
    queue: bool = Field(
        False,
        description="asynchronous inference: input queue <model> and sink <model>/sink",
    )
    queue_window: int = Field(64, ge=1, description="records each queue consumer holds at once")
    eas_date_skew: float = Field(
        900.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds an EAS-signed Date may be off the server's clock",
    )
    eas_date_any_zone: bool = Field(
        True,
        description="accept an EAS Date in any UTC offset labelled GMT, as the published"
        " eas-prediction client writes its local time; false: the Date must be GMT",
    )
    eas_replay_cache: int = Field(
        100_000,
        ge=0,
        description="EAS signatures remembered to refuse replays (0: replays not refused)",
    )
    eas_replay_grace: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds after its first use that the same EAS signature is still"
        " accepted (identical requests signed in the same second, client retries)",
    )
    max_header_line_size: int = Field(
        8 * KiB,
        ge=1,
        description="longest request URL (else 414) or header field, name and value (else 431),"
        " in bytes",
    )
    max_header_size: int = Field(
        32 * KiB, ge=1, description="largest request head (request line and headers), in bytes"
    )
    max_headers: int = Field(100, ge=1, description="most header fields in one request")
    header_timeout: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds a connection has to send a whole request head (else 408, closed)",
    )
    body_timeout: float = Field(
        30.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds a request body may go without receiving a byte (else 408, closed)",
    )
    max_connections: int = Field(
        1024,
        ge=1,
        description="most open HTTP connections per server process; more are answered 503"
        " and closed",
    )
    discovery_url: str | None = Field(
        None,
        description="register each ready model in this Redis (redis://…) for EAS service"
        " discovery; none: the discovery route lists this server only",
    )
    advertise_address: str | None = Field(
        None,
        description="ip:port clients reach this server at; none: host:port (a concrete host)",
    )
    discovery_weight: int = Field(
        100, ge=1, le=1_000_000, description="this replica's weight in the discovery list"
    )
    discovery_ttl: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds a registration lives without a heartbeat (sent every ttl/3)",
    )
    discovery_grace: float = Field(
        3.5,
        ge=0,
        allow_inf_nan=False,
        description="seconds a deregistered replica keeps serving before it drains, while"
        " clients refresh their lists (the eas-prediction SDK every 3 s)",
    )

    request_log: RequestLogMode = Field(
        "off",
        description="log served requests for model monitoring: all (request and response"
        " records), request, response, or off",
    )
    request_log_topic: str = Field(
        "servekit-requests", description="topic / stream / file stream of the request records"
    )
    request_log_sample: float = Field(
        1.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="share of requests logged, drawn per request; errors (4xx/5xx) are always"
        " logged",
    )
    request_log_batch: int = Field(
        1, ge=1, description="request records per message (mlrun's log_stream_batch)"
    )

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def token_value(self) -> str | None:
        """The token as plain text (``None``: no token required)."""
        return None if self.token is None else self.token.get_secret_value()


class QueueSettings(_Settings):
    """Queue storage and limits (``queue_*`` as CLI flags and App keywords)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "QUEUE_")
    _kind: ClassVar[str] = "queue"

    url: str = Field(
        "sqlite://./servekit-queues",
        description="queue storage: sqlite://DIR, sqlite://:memory: or redis://HOST:PORT/DB",
    )
    max_length: int = Field(0, ge=0, description="most records per queue (0: unbounded)")
    max_payload_bytes: int = Field(8 * MiB, ge=1, description="largest record, in bytes")
    lease: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds a dead consumer keeps its records before redelivery",
    )


class EventSettings(_Settings):
    """Where events, logs and request records go and how much is held on the way
    (``events_*`` as CLI flags and App keywords)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "EVENTS_")
    _kind: ClassVar[str] = "events"

    url: str = Field(
        "stdout",
        description="where events go: stdout, file:///PATH.jsonl, kafka://HOST:PORT[,HOST:PORT],"
        " redis://HOST:PORT/DB; several separated by spaces",
    )
    engine: bool = Field(
        True, description="emit the engine's events (requests, batches, refusals, timeouts)"
    )
    buffer_size: int = Field(
        100_000, ge=1, description="events held in memory per destination before spooling"
    )
    spool_dir: str | None = Field(
        None,
        description="folder for events a destination could not take yet; none: a folder in"
        " the system's temporary directory",
    )
    spool_max_bytes: int = Field(
        256 * MiB, ge=0, description="bytes spooled per destination; beyond, events are dropped"
    )
    exit_flush_timeout: float = Field(
        5.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds the interpreter's exit waits to deliver buffered events",
    )


QUEUE_FLAG_PREFIX = "queue_"
EVENTS_FLAG_PREFIX = "events_"


def flat_fields() -> dict[str, tuple[type[_Settings], str]]:
    """Every setting's flat name (a CLI flag, an ``App`` keyword) → its class and field.

    Queue settings carry a ``queue_`` prefix: ``QueueSettings.url`` is ``queue_url``; event
    settings an ``events_`` prefix (``events_url``).
    """
    fields: dict[str, tuple[type[_Settings], str]] = {}
    for cls in (ServerSettings, BatchSettings):
        fields.update((name, (cls, name)) for name in cls.model_fields)
    fields.update(
        (QUEUE_FLAG_PREFIX + name, (QueueSettings, name)) for name in QueueSettings.model_fields
    )
    fields.update(
        (EVENTS_FLAG_PREFIX + name, (EventSettings, name)) for name in EventSettings.model_fields
    )
    return fields


def split_overrides(
    given: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Sort flat names into server, batching and queue keywords (``None``: not given).

    ``events_*`` names are left to :func:`event_overrides` (the bus is one per process).
    """
    parts: dict[type[_Settings], dict[str, Any]] = {
        ServerSettings: {},
        BatchSettings: {},
        QueueSettings: {},
    }
    fields = flat_fields()
    for name, value in given.items():
        if name not in fields:
            raise UnknownSetting(f"unknown setting {name!r}{suggest(name, fields)}")
        cls, field = fields[name]
        if value is not None and cls is not EventSettings:
            parts[cls][field] = value
    return parts[ServerSettings], parts[BatchSettings], parts[QueueSettings]


def event_overrides(given: Mapping[str, Any]) -> dict[str, Any]:
    """The ``events_*`` names of ``given`` as ``EventSettings`` keywords (``None``: not given)."""
    return {
        name.removeprefix(EVENTS_FLAG_PREFIX): value
        for name, value in given.items()
        if name.startswith(EVENTS_FLAG_PREFIX) and value is not None
    }


def with_overrides(cls: type[_S], settings: _S | None, changes: Mapping[str, Any]) -> _S:
    """``settings`` (default: ``cls()``, read from the environment) with ``changes`` applied."""
    if settings is None:
        return cls(**changes)
    return settings.replace(**changes) if changes else settings


def set_in_env(cls: type[_Settings], field: str) -> bool:
    """Whether ``field``'s ``SERVEKIT_*`` variable is set (and not empty)."""
    return _environ_get(cls.env_name(field)) is not None


def settings_group(target: type[_D], settings: BaseSettings, prefix: str = "") -> _D:
    """Dataclass ``target`` built from the settings named ``prefix`` + each of its fields
    (e.g. ``TcpLimits`` from the ``tcp_*`` settings): one place maps settings to a door."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(target)]  # type: ignore[arg-type]
    return target(**{name: getattr(settings, prefix + name) for name in names})


class JobSettings(_Settings):
    """Training / evaluation / inference jobs (:mod:`servekit.jobs`), ``SERVEKIT_JOBS_*``.

    dubhe-sdk's own variables (``PORT``, ``protocol``, ``BOOTSTRAP_SERVERS``, ``INSTANCE_ID``
    …) are read by :mod:`servekit.jobs` after these, so a ``SERVEKIT_JOBS_*`` variable wins.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "JOBS_")
    _kind: ClassVar[str] = "jobs"

    host: str = Field("0.0.0.0", description="address the jobs door binds (all interfaces)")
    port: int | None = Field(
        None, ge=0, le=65535, description="port of the jobs door; none: $PORT, else 8030"
    )
    protocol: Literal["http", "tcp"] | None = Field(
        None, description="http or tcp; none: $protocol (http selects HTTP, else TCP), else http"
    )
    max_jobs: int = Field(4, ge=1, description="training/evaluation jobs running at once")
    keep_finished: int = Field(
        1000, ge=0, description="finished jobs remembered for GET /jobs/{id}"
    )
    work_dir: str = Field(
        "servekit-jobs", description="per-job folders (output, tmp, job.log) go under it"
    )
    log_dir: str | None = Field(
        None,
        description="folder of the rotating service log dubhe.log; none: /temporary/log if it"
        " exists, else WORK_DIR/log",
    )
    events_url: str | None = Field(
        None,
        description="where job messages go; none: kafka://$BOOTSTRAP_SERVERS when set, else"
        " the process's event bus (SERVEKIT_EVENTS_URL)",
    )
