"""Virtex-style request handlers: three hooks that turn elements into responses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from servekit.errors import ModelError
from servekit.messages import HttpMessage
from servekit.model import isolate


class RequestHandler(ABC):
    """Subclass and implement the three hooks; ``http_server`` batches across requests.

    ``process_request(data)`` gets a list of decoded elements (from many requests) and
    returns the model input; ``run_inference(model_input)`` returns one output per element;
    ``process_response(output)`` turns one output into a JSON value.
    """

    @abstractmethod
    def process_request(self, data: list[Any]) -> Any: ...

    @abstractmethod
    def run_inference(self, model_input: Any) -> Iterable[Any]: ...

    @abstractmethod
    def process_response(self, output: Any) -> Any: ...

    def handle(self, data: list[Any]) -> list[Any]:
        """Run the three hooks on a batch; a response hook failure fails that element only."""
        outputs = list(self.run_inference(self.process_request(data)))
        if len(outputs) != len(data):
            raise ModelError(
                f"run_inference returned {len(outputs)} outputs for {len(data)} elements"
            )
        return [isolate(self.process_response, output) for output in outputs]

    def validate(self, message: HttpMessage) -> HttpMessage:
        """Run the hooks locally on ``message``; returns the response message."""
        message.validate()
        results = self.handle(message.data)
        for result in results:
            if isinstance(result, Exception):
                raise result
        response = HttpMessage(data=results)
        response.validate()
        return response
