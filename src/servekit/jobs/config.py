"""What a jobs service runs with: :class:`~servekit.settings.JobSettings`, then dubhe-sdk's
own environment variables (``PORT``, ``protocol``, ``BOOTSTRAP_SERVERS``, ``INSTANCE_ID`` …),
then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servekit.settings import InvalidSetting, JobSettings, with_overrides

DEFAULT_PORT = 8030
DEFAULT_TOPIC_STATUS = "alg_model_progress"
DEFAULT_TOPIC_RESULT = "als_model_result"  # dubhe-sdk 2.14's default, spelling included
DUBHE_LOG_DIR = "/temporary/log"
AI_PLATFORM = 1  # PLATFORM_TYPE of the platform (0: started by hand)

# INSTANCE_ID's third dash-separated field names the task the pod was started for (dubhe)
_TASK_OF_PREFIX = {
    "train": 1,
    "forecast": 2,
    "inference": 3,
    "automark": 3,
    "replay": 3,
    "kdtask": 3,
}


@dataclass(frozen=True)
class JobConfig:
    """Every setting of a jobs service, resolved."""

    host: str
    port: int
    protocol: str
    max_jobs: int
    keep_finished: int
    work_dir: Path
    log_dir: Path
    events_url: str | None
    topic_status: str
    topic_result: str
    instance_id: str
    platform_type: int

    @property
    def on_platform(self) -> bool:
        """Started by the platform (``PLATFORM_TYPE=1``): requests must name this instance."""
        return self.platform_type == AI_PLATFORM

    @property
    def task_type(self) -> int | None:
        """The req_type ``INSTANCE_ID`` names (1 train, 2 evaluate, 3 inference), if any."""
        parts = self.instance_id.split("-")
        return _TASK_OF_PREFIX.get(parts[2]) if len(parts) > 2 else None

    @classmethod
    def resolve(
        cls, settings: JobSettings | None = None, environ: Mapping[str, str] | None = None
    ) -> JobConfig:
        """``settings`` (default: from ``SERVEKIT_JOBS_*``), then dubhe's variables."""
        settings = with_overrides(JobSettings, settings, {})
        env = os.environ if environ is None else environ
        work_dir = Path(settings.work_dir)
        return cls(
            host=settings.host,
            port=settings.port if settings.port is not None else _port(env),
            protocol=settings.protocol or _protocol(env),
            max_jobs=settings.max_jobs,
            keep_finished=settings.keep_finished,
            work_dir=work_dir,
            log_dir=Path(settings.log_dir) if settings.log_dir else _log_dir(work_dir),
            events_url=settings.events_url or _kafka_url(env),
            topic_status=env.get("TOPIC_MODEL_STATUS") or DEFAULT_TOPIC_STATUS,
            topic_result=env.get("TOPIC_MODEL_RESULT") or DEFAULT_TOPIC_RESULT,
            instance_id=env.get("INSTANCE_ID", ""),
            platform_type=_int(env, "PLATFORM_TYPE", 0),
        )

    def replace(self, **changes: Any) -> JobConfig:
        """A copy with ``changes``."""
        return JobConfig(**{**self.__dict__, **changes})


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidSetting(f"environment variable {name}={raw!r} must be an integer") from None


def _port(env: Mapping[str, str]) -> int:
    port = _int(env, "PORT", DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise InvalidSetting(f"environment variable PORT={port} is not a port (0-65535)")
    return port


def _protocol(env: Mapping[str, str]) -> str:
    # dubhe: "http" selects HTTP, anything else TCP; unset means HTTP here
    raw = env.get("protocol")
    if raw is None or raw == "":
        return "http"
    return "http" if raw == "http" else "tcp"


def _kafka_url(env: Mapping[str, str]) -> str | None:
    servers = env.get("BOOTSTRAP_SERVERS", "").strip()
    if not servers:
        return None
    hosts = ",".join(h.strip() for h in servers.replace(";", ",").split(",") if h.strip())
    return f"kafka://{hosts}"


def _log_dir(work_dir: Path) -> Path:
    dubhe = Path(DUBHE_LOG_DIR)
    if dubhe.is_dir() and os.access(dubhe, os.W_OK):
        return dubhe
    return work_dir / "log"
