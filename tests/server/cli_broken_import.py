"""A model module whose own import fails: ``servekit serve`` must show where (a traceback)."""

from __future__ import annotations

import servekit_no_such_dependency  # type: ignore[import-not-found]  # noqa: F401

import servekit


class Model(servekit.Model):
    name = "never"
