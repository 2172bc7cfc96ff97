"""The README's ``Image.load_img(path)`` is Keras's name (``keras.utils.load_img``), not
Pillow's; this stands in for ``from PIL import Image`` with ``load_img = PIL.Image.open``."""

from __future__ import annotations

from types import SimpleNamespace

from PIL import Image as _pil

Image = SimpleNamespace(load_img=_pil.open)
