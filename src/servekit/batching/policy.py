"""Batching settings: constructor arguments first, then ``SERVEKIT_*`` variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

_ENV_PREFIX = "SERVEKIT_"
_UNSET = object()


@dataclass(frozen=True)
class BatchPolicy:
    """When the batcher dispatches, and how much it holds.

    - ``max_batch_size``: most items (rows) in one ``predict`` call.
    - ``max_latency``: seconds the oldest queued item may wait for a batch to fill
      (also known as ``max_batch_interval`` / ``max_time_on_queue``).
    - ``idle_batch_size``: when a model instance is free and every queued item fits in one
      batch, dispatch at once if there are at least this many items.
    - ``max_queue_size``: most items waiting; beyond it new work is refused (HTTP 429).
    - ``instances``: batches that may run at once (model replicas / executor threads).
    """

    max_batch_size: int = 32
    max_latency: float = 0.005
    idle_batch_size: int = 1
    max_queue_size: int = 4096
    instances: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.max_batch_size < 1:
            problems.append(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_latency < 0:
            problems.append(f"max_latency must be >= 0 seconds, got {self.max_latency}")
        if not 1 <= self.idle_batch_size <= self.max_batch_size:
            problems.append(
                f"idle_batch_size must be between 1 and max_batch_size ({self.max_batch_size}),"
                f" got {self.idle_batch_size}"
            )
        if self.max_queue_size < 1:
            problems.append(f"max_queue_size must be >= 1, got {self.max_queue_size}")
        if self.instances < 1:
            problems.append(f"instances must be >= 1, got {self.instances}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def resolve(cls, **given: object) -> BatchPolicy:
        """Build a policy from arguments (``None`` = not given), then env vars, then defaults.

        ``max_batch_interval`` and ``max_time_on_queue`` are accepted as names for
        ``max_latency`` (seconds); env vars ``SERVEKIT_MAX_BATCH_INTERVAL`` likewise.
        """
        aliases = ("max_batch_interval", "max_time_on_queue")
        for alias in aliases:
            value = given.pop(alias, None)
            if value is not None and given.get("max_latency") is None:
                given["max_latency"] = value
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown batching setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, object] = {}
        for field in fields(cls):
            value = given.get(field.name)
            if value is None:
                value = _from_env(field.name, field.type)
            if value is not None:
                values[field.name] = value
        return cls(**values)  # type: ignore[arg-type]


def _from_env(name: str, type_name: object) -> object | None:
    names = [_ENV_PREFIX + name.upper()]
    if name == "max_latency":
        names.append(_ENV_PREFIX + "MAX_BATCH_INTERVAL")
    for env_name in names:
        raw = os.environ.get(env_name)
        if raw is None or raw == "":
            continue
        convert = float if type_name in (float, "float") else int
        try:
            return convert(raw)
        except ValueError:
            raise ValueError(
                f"environment variable {env_name}={raw!r} is not a valid {convert.__name__}"
            ) from None
    return None
