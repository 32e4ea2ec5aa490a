"""What a registered model needs to load outside a CIP installation.

A model whose code imports ``cip`` (the recommender's pyfunc) carries a copy of
the package as MLflow ``code_paths`` and the package's runtime dependencies,
pinned to the installed versions, as pip requirements. The distribution itself
(``cip-platform``) is not a requirement: it is on no package index, and the
copy already provides it. MLflow puts the copy's folder on ``sys.path`` when
the model is loaded; where ``cip`` is already imported (inside CIP itself) the
imported package is used.

Only the layers a model can import are copied (``cip``, ``cip.profiles``,
``cip.features``, ``cip.models``): a lower layer never imports a higher one.
"""

from __future__ import annotations

import importlib.util
import shutil
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

__all__ = ["DISTRIBUTION", "package_code_path", "package_requirements"]

DISTRIBUTION = "cip-platform"
_LAYERS = ("profiles", "features", "models")
_ALL_LAYERS = ("profiles", "features", "models", "serving", "activation", "pipelines")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def _folder(module: str) -> Path:
    spec = importlib.util.find_spec(module)  # imports only the parent package, not `module`
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"cannot locate the package {module}")
    return Path(next(iter(spec.submodule_search_locations)))


def package_code_path(dest: str | Path) -> str:
    """Copy the ``cip`` package (layers up to ``cip.models``) to ``dest/cip``; returns that path.

    Works for an editable install (the layer folders sit at the repository root)
    and for a wheel (they sit inside ``cip/``) alike.
    """
    target = Path(dest) / "cip"
    root = _folder("cip")
    shutil.copytree(root, target, ignore=lambda d, names: _root_ignore(root, d, names))
    for layer in _LAYERS:
        shutil.copytree(_folder(f"cip.{layer}"), target / layer, ignore=_IGNORE)
    return str(target)


def _root_ignore(root: Path, folder: str, names: list[str]) -> set[str]:
    skip = set(_IGNORE(folder, names))
    if Path(folder) == root:  # a wheel's cip/ holds the layers: they are copied one by one
        skip.update(n for n in names if n in _ALL_LAYERS)
    return skip


def package_requirements(extra: tuple[str, ...] = ()) -> list[str]:
    """``cip-platform``'s runtime requirements pinned to the installed versions (plus ``extra``)."""
    from packaging.requirements import Requirement

    out: dict[str, str] = {}
    try:
        declared = requires(DISTRIBUTION) or []
    except PackageNotFoundError:  # a source tree that was never installed
        declared = []
    for text in [*declared, *extra]:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an optional extra (spark, dev)
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        try:
            out[req.name.lower()] = f"{req.name}{extras}=={version(req.name)}"
        except PackageNotFoundError:
            out[req.name.lower()] = f"{req.name}{extras}{req.specifier}"
    return sorted(out.values(), key=str.lower)
