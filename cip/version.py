"""The installed version of CIP (the ``cip-platform`` distribution).

A module of its own so that any layer can read it without importing ``cip``'s
lazy public API (which lives in the top layer, :mod:`cip.pipelines`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("cip-platform")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
