"""CIP: an ML-first customer intelligence platform.

The Python API starts from a workspace folder::

    import cip

    ws = cip.Workspace.init("my-shop")      # or cip.Workspace.open("my-shop")
    ws.simulate(customers=2000, days=365)
    ws.ingest()
    ws.unify()
    result = ws.train("churn", as_of="2024-06-01")

Each layer is a subpackage: :mod:`cip.profiles`, :mod:`cip.features`,
:mod:`cip.models`, :mod:`cip.activation`, :mod:`cip.serving` and
:mod:`cip.pipelines` (the layering runs in that order; a lower layer never
imports a higher one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cip.version import __version__

if TYPE_CHECKING:
    from cip.pipelines.api import Workspace
    from cip.profiles.errors import CIPError

__all__ = ["CIPError", "Workspace", "__version__"]


def __getattr__(name: str) -> Any:
    # lazy: `import cip` stays cheap (no MLflow, LightGBM or BentoML until used)
    if name == "Workspace":
        from cip.pipelines.api import Workspace

        return Workspace
    if name == "CIPError":
        from cip.profiles.errors import CIPError

        return CIPError
    raise AttributeError(f"module 'cip' has no attribute {name!r}")
