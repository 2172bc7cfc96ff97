"""Adaptive dispatch through a real server: set by keyword or per model, results unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import servekit
from servekit.settings import InvalidSetting

Serve = Callable[..., Any]  # the `serve` fixture: models -> a started LiveServer


class Double(servekit.Model):
    name = "double"

    def predict(self, batch: list[Any]) -> list[Any]:
        return [row * 2 for row in batch]


class AsyncDouble(servekit.Model):
    name = "asyncdouble"
    dispatch = "adaptive"

    async def predict(self, batch: list[Any]) -> list[Any]:
        await asyncio.sleep(0.002)
        return [row * 2 for row in batch]


def rows(value: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [value]}]}


def test_adaptive_dispatch_serves_concurrent_clients_with_their_own_results(serve: Serve) -> None:
    live = serve([Double(), AsyncDouble()], dispatch="adaptive")

    async def client_loop(client: Any, model: str, first: int) -> list[float]:
        got = []
        for i in range(first, first + 20):  # a closed loop: the next request after the answer
            response = await client.post(f"/v2/models/{model}/infer", json=rows(float(i)))
            assert response.status_code == 200, response.text
            got.extend(response.json()["outputs"][0]["data"])
        return got

    async def main() -> list[list[float]]:
        async with live.async_client() as client:
            loops = [
                client_loop(client, model, 100 * c)
                for c in range(8)
                for model in ("double", "asyncdouble")
            ]
            return list(await asyncio.gather(*loops))

    results = asyncio.run(main())
    for n, got in enumerate(results):
        first = 100 * (n // 2)
        assert got == [2.0 * i for i in range(first, first + 20)]
    for name in ("double", "asyncdouble"):
        batcher = live.runtime(name).batcher
        assert batcher.policy.dispatch == "adaptive" and batcher.adaptive is not None
        assert batcher.adaptive.cost.ready  # it learnt the model's cost while serving


def test_dispatch_is_a_per_model_setting_checked_with_the_others() -> None:
    assert AsyncDouble().batch_policy().dispatch == "adaptive"
    assert Double().batch_policy().dispatch == "idle"
    with pytest.raises(InvalidSetting, match="dispatch"):
        Double(dispatch="eager").batch_policy()
