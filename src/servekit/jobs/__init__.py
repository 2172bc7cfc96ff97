"""Training, evaluation and inference pipelines, compatible with dubhe-sdk.

Move by changing one import: ``import servekit.jobs as dubhe_sdk``. Decorate a class with
``@pipeline()`` and its methods with ``@train()``, ``@predict()`` (offline evaluation) or
``@inference()`` (online); each method takes a :class:`Context`. ``servekit serve app.py`` or
``jobs.run()`` serves them over HTTP or TCP (``protocol``, ``PORT``); importing this package
starts nothing. Jobs report START, PROGRESS, RESULT and exactly one END on the event bus
(Kafka when ``BOOTSTRAP_SERVERS`` is set). See ``docs/jobs.md``.
"""

from __future__ import annotations

from servekit.jobs.context import Context, ContextKey, model_file_name, time_stamp
from servekit.jobs.job import Job, JobCancelled
from servekit.jobs.messages import MesType
from servekit.jobs.pipeline import inference, pipeline, predict, train
from servekit.jobs.runner import TooManyJobs
from servekit.jobs.serve import run

__all__ = [
    "Context",
    "ContextKey",
    "Job",
    "JobCancelled",
    "MesType",
    "TooManyJobs",
    "inference",
    "model_file_name",
    "pipeline",
    "predict",
    "run",
    "time_stamp",
    "train",
]
