"""Turn ``module:Attr`` or ``path/to/file.py:Attr`` into ``servekit.Model`` instances."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from servekit.model import Model


def load_target(target: str) -> list[Model]:
    """Import ``target`` and return the model(s) it names.

    ``Attr`` may be a ``Model`` subclass (instantiated with no arguments), a ``Model``
    instance, or a list/tuple of either.
    """
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:ATTR or FILE.py:ATTR, got {target!r}")
    module = _import(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{module_name!r} has no attribute {attr!r}") from None
    return _as_models(obj, target)


def _import(module_name: str) -> Any:
    path = Path(module_name)
    if module_name.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ValueError(f"no such file: {module_name}")
        sys.path.insert(0, str(path.resolve().parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    return importlib.import_module(module_name)


def _as_models(obj: Any, target: str) -> list[Model]:
    if isinstance(obj, (list, tuple)):
        return [m for item in obj for m in _as_models(item, target)]
    if isinstance(obj, type) and issubclass(obj, Model):
        return [obj()]
    if isinstance(obj, Model):
        return [obj]
    raise TypeError(
        f"{target} is a {type(obj).__name__}; expected a servekit.Model subclass or instance"
    )
