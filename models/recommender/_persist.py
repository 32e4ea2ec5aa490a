"""Saving and loading recommenders as ``.npz`` arrays plus one JSON file (never a pickle).

``arrays.npz`` holds numeric arrays only (sparse matrices as their CSR parts) and
is read with ``allow_pickle=False``; ``model.json`` holds the algorithm, its
parameters and the user / item id maps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from cip.models.recommender._base import Recommender

__all__ = ["FORMAT_VERSION", "nested", "restore", "save"]

FORMAT_VERSION = 1


def save(model: Recommender, path: str | Path, nested: Sequence[Recommender] = ()) -> Path:
    """Write ``model`` into the folder ``path``: ``arrays.npz`` and ``model.json``.

    ``nested`` models (a blend's members, fitted on the same ids) are stored in the
    same two files: their arrays prefixed ``member<i>.``, their algorithm and
    parameters under ``members`` of the JSON (the id maps are the outer model's).
    """
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    arrays = _arrays_of(model)
    for i, sub in enumerate(nested):
        arrays.update({f"member{i}.{k}": v for k, v in _arrays_of(sub).items()})
    np.savez(d / "arrays.npz", **arrays)
    meta = {
        "format": "cip-recommender",
        "format_version": FORMAT_VERSION,
        "algorithm": model.algorithm,
        "params": _jsonable(model.get_params()),
        "user_kind": model.user_kind_,
        "item_kind": model.item_kind_,
        "user_ids": _jsonable(model.user_ids_.tolist()),
        "item_ids": _jsonable(model.item_ids_.tolist()),
        "extra": _jsonable(getattr(model, "extra_", {})),
    }
    if nested:
        meta["members"] = [
            {"algorithm": sub.algorithm, "params": _jsonable(sub.get_params())} for sub in nested
        ]
    (d / "model.json").write_text(json.dumps(meta))
    return d


def nested(meta: dict[str, Any], data: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(meta, arrays)`` of each model saved with ``nested=``, ready for :func:`restore`."""
    out = []
    for i, sub in enumerate(meta.get("members", [])):
        prefix = f"member{i}."
        sub_meta = {**meta, "algorithm": sub["algorithm"], "params": sub["params"], "extra": {}}
        sub_meta.pop("members", None)
        out.append(
            (sub_meta, {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)})
        )
    return out


def _arrays_of(model: Recommender) -> dict[str, np.ndarray]:
    arrays = {"item_popularity_": model.item_popularity_}
    _put_sparse(arrays, "user_items_", model.user_items_)
    for name in model._arrays:
        value = getattr(model, name)
        if sp.issparse(value):
            _put_sparse(arrays, name, value)
        else:
            arrays[name] = np.asarray(value)
    return arrays


def restore(cls: type[Recommender], meta: dict[str, Any], data: Any) -> Recommender:
    """A fitted ``cls`` from the parsed ``model.json`` and the ``arrays.npz`` contents."""
    model = cls(**meta["params"])
    kinds = {"int": np.int64, "str": object}
    model.user_kind_, model.item_kind_ = meta["user_kind"], meta["item_kind"]
    model.user_ids_ = np.asarray(meta["user_ids"], dtype=kinds[model.user_kind_])
    model.item_ids_ = np.asarray(meta["item_ids"], dtype=kinds[model.item_kind_])
    model.item_popularity_ = data["item_popularity_"]
    model.user_items_ = _get_sparse(data, "user_items_")
    for name in cls._arrays:
        value = _get_sparse(data, name) if f"{name}__indptr" in data else data[name]
        setattr(model, name, value)
    model.extra_ = meta.get("extra", {})
    model._reset_caches()
    return model


def _put_sparse(arrays: dict[str, np.ndarray], name: str, m: sp.spmatrix) -> None:
    m = sp.csr_matrix(m)
    arrays[f"{name}__data"] = m.data
    arrays[f"{name}__indices"] = m.indices
    arrays[f"{name}__indptr"] = m.indptr
    arrays[f"{name}__shape"] = np.asarray(m.shape, dtype=np.int64)


def _get_sparse(data: Any, name: str) -> sp.csr_matrix:
    return sp.csr_matrix(
        (data[f"{name}__data"], data[f"{name}__indices"], data[f"{name}__indptr"]),
        shape=tuple(int(v) for v in data[f"{name}__shape"]),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value
