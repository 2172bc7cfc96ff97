"""Triton's extensions of the v2 protocol that ``tritonclient`` calls: model configuration,
inference statistics and the model repository index, built from what the server knows.

Only what servekit measures is reported: request, item and batch counts, the queue wait and
the time ``predict`` took; Triton fields servekit has no measure for are left out.
"""

from __future__ import annotations

from typing import Any

from servekit.protocol.v2 import model_metadata
from servekit.server.runtime import FAILED, LOADING, READY, ModelRegistry, ModelRuntime

_NS = 1_000_000_000


def model_config(runtime: ModelRuntime) -> dict[str, Any]:
    """``GET /v2/models/{name}/config``: Triton's model configuration, as JSON."""
    model, policy = runtime.model, runtime.policy
    metadata = model_metadata(str(model.name), [], model.platform, model.inputs, model.outputs)
    return {
        "name": model.name,
        "platform": model.platform,
        "backend": "python",
        "max_batch_size": policy.max_batch_size if model.batch_rows else 0,
        "input": [_config_tensor(t) for t in metadata["inputs"]],
        "output": [_config_tensor(t) for t in metadata["outputs"]],
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(policy.max_latency * 1e6),
            "default_queue_policy": {"max_queue_size": policy.max_queue_size},
        },
        "instance_group": [{"count": policy.instances, "kind": "KIND_CPU"}],
    }


def _config_tensor(tensor: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": tensor["name"],
        "data_type": f"TYPE_{tensor['datatype']}",
        "dims": tensor["shape"],
    }


def model_statistics(runtimes: list[ModelRuntime]) -> dict[str, Any]:
    """``GET /v2/models[/{name}]/stats``: Triton's statistics extension."""
    return {"model_stats": [_statistics(runtime) for runtime in runtimes]}


def _statistics(runtime: ModelRuntime) -> dict[str, Any]:
    stats = runtime.batcher.stats
    failed = stats.failed + stats.refused + stats.timed_out
    return {
        "name": runtime.model.name,
        "version": runtime.model.version or "",
        "inference_count": stats.items,
        "execution_count": stats.batches,
        "inference_stats": {
            "success": {"count": stats.completed},
            "fail": {"count": failed},
            "queue": {"count": stats.items, "ns": round(stats.queue_wait_seconds * _NS)},
            "compute_infer": {"count": stats.batches, "ns": round(stats.predict_seconds * _NS)},
        },
        "batch_stats": [
            {"batch_size": size, "compute_infer": {"count": count}}
            for size, count in sorted(stats.batch_sizes.items())
        ],
    }


_STATES = {READY: "READY", LOADING: "LOADING", FAILED: "UNAVAILABLE"}


def repository_index(registry: ModelRegistry) -> list[dict[str, Any]]:
    """``POST /v2/repository/index``: every model version the server holds and its state."""
    index = []
    for runtime in registry:
        entry = {
            "name": runtime.model.name,
            "version": runtime.model.version or "",
            "state": _STATES.get(runtime.state, "UNAVAILABLE"),
        }
        if runtime.load_error:
            entry["reason"] = runtime.load_error
        index.append(entry)
    return index


def model_list(registry: ModelRegistry) -> dict[str, Any]:
    """``GET /v2/models``: the models served, their versions and states."""
    return {
        "models": [
            {
                "name": runtime.model.name,
                "version": runtime.model.version or "",
                "platform": runtime.model.platform,
                "state": runtime.state,
            }
            for runtime in registry
        ]
    }
