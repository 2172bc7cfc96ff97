"""Logs of a jobs service in dubhe-sdk's format: one file per job, and the whole service in
a rotating ``dubhe.log`` (14 files of 10 MiB, as dubhe-sdk keeps it)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "JobLog", "log", "setup_service_log"]

FORMAT = "%(asctime)s | %(levelname)-8s | %(filename)s:%(lineno)s: %(message)s"
LOG_FILE = "dubhe.log"
MAX_BYTES, BACKUPS = 10 * 1024 * 1024, 14

log = logging.getLogger("servekit.jobs")
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_installed: list[logging.Handler] = []


def setup_service_log(log_dir: Path, level: int = logging.INFO) -> Path:
    """Send every logger's records (the root's) to the console and ``log_dir/dubhe.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / LOG_FILE
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(FORMAT)
    rotating = logging.handlers.RotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
    )
    console = logging.StreamHandler(sys.stderr)
    _installed[:] = [rotating, console]
    for handler in _installed:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    return path


class JobLog:
    """Writes to one job's log file (if any) and to the ``servekit.jobs`` logger.

    Records carry the caller's file and line (the user's code, not this package's).
    """

    def __init__(self, path: Path | None, job_id: str | None = None) -> None:
        self.job_id = job_id
        self._file: logging.Handler | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = logging.FileHandler(path, encoding="utf-8")
            self._file.setFormatter(logging.Formatter(FORMAT))

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.write(logging.INFO, msg, *args, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.write(logging.ERROR, msg, *args, **kwargs)

    def write(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        """One record to the job's file and, when its level is enabled, to the logger."""
        to_logger = log.isEnabledFor(level)
        if self._file is None and not to_logger:
            return
        filename, line, function = _caller()
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("job_id", self.job_id)
        exc_info = kwargs.get("exc_info")
        if exc_info is True:
            exc_info = sys.exc_info()
        record = log.makeRecord(
            log.name, level, filename, line, msg, args, exc_info or None, function, extra
        )
        if self._file is not None:
            self._file.handle(record)
        if to_logger:
            log.handle(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _caller() -> tuple[str, int, str]:
    """The first frame outside this package (the user's call to ``ctx.log`` …)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and os.path.dirname(frame.f_code.co_filename) == _PACKAGE:
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
