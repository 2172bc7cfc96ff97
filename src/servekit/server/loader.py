"""Turn ``module:Attr`` or ``path/to/file.py:Attr`` into ``servekit.Model`` instances.

Two kinds of failure: :class:`TargetError` when the target names nothing servable (a wrong
path, module or attribute: one line says which), :class:`ModelCodeError` when the user's own
code raised while it was imported or instantiated (its traceback says where).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from servekit.model import Model


class TargetError(ValueError):
    """A ``MODULE:ATTR`` target that names no model: bad form, no such file, module or attribute."""


class ModelCodeError(Exception):
    """The user's module or model class raised; ``details`` is the traceback from their code."""

    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.details = details


def load_target(target: str) -> list[Model]:
    """Import ``target`` and return the model(s) it names.

    ``Attr`` may be a ``Model`` subclass (instantiated with no arguments), a ``Model``
    instance, or a list/tuple of either; an mlrun-style ``servekit.serving.V2ModelServer``
    subclass or instance is served by its ``as_model()``.
    """
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"expected MODULE:ATTR or FILE.py:ATTR, got {target!r}")
    module = _import(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"{module_name!r} has no attribute {attr!r}") from None
    return _as_models(obj, target)


def import_module(module_name: str) -> Any:
    """Import a module name or a ``.py`` file (failures as :func:`load_target` raises them)."""
    return _import(module_name)


def _import(module_name: str) -> Any:
    path = Path(module_name)
    if module_name.endswith(".py") or path.is_file():
        if not path.is_file():
            raise TargetError(f"no such file: {module_name}")
        return _import_file(path)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise TargetError(str(exc)) from None  # the target itself (or its package) is missing
        raise _code_error(f"importing {module_name} failed", exc) from None
    except Exception as exc:
        raise _code_error(f"importing {module_name} failed", exc) from None


def _import_file(path: Path) -> Any:
    sys.path.insert(0, str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[path.stem]
        raise _code_error(f"importing {path} failed", exc) from None
    return module


def _as_models(obj: Any, target: str) -> list[Model]:
    if isinstance(obj, (list, tuple)):
        return [m for item in obj for m in _as_models(item, target)]
    if isinstance(obj, type) and issubclass(obj, Model):
        try:
            return [obj()]
        except Exception as exc:
            raise _code_error(f"{target}: creating the model failed", exc) from None
    if isinstance(obj, Model):
        return [obj]
    from servekit.serving import V2ModelServer

    if isinstance(obj, type) and issubclass(obj, V2ModelServer):
        try:
            obj = obj()
        except Exception as exc:
            raise _code_error(f"{target}: creating the model failed", exc) from None
    if isinstance(obj, V2ModelServer):
        return [obj.as_model()]
    raise TargetError(
        f"{target} is a {type(obj).__name__}; expected a servekit.Model subclass or instance"
        " (or a servekit.serving.V2ModelServer one)"
    )


def _code_error(message: str, exc: BaseException) -> ModelCodeError:
    return ModelCodeError(message, "".join(traceback.format_exception(type(exc), exc, _user(exc))))


def _user(exc: BaseException) -> TracebackType | None:
    """``exc``'s traceback without its first frames in this module and importlib."""
    tb = exc.__traceback__
    while tb is not None and _is_machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb or exc.__traceback__


def _is_machinery(filename: str) -> bool:
    return (
        filename == __file__
        or filename.startswith("<frozen importlib")
        or filename == importlib.__file__
    )
