"""servekit: serve Python models fast."""

__version__ = "0.1.0"

from servekit.model import Model

__all__ = ["Model", "__version__"]
