"""Interactions -> sparse user x item matrix, id normalisation and id look-ups.

Ids may be any strings or integers. They are normalised once at fit time to one
*kind*: ``int`` (every id an integer, also integral floats such as Online
Retail's ``17850.0``) or ``str``. Queries are normalised to the model's kind, so
a serving layer may pass ``"17850"`` for a model trained on integer ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.profiles.errors import DataError

__all__ = [
    "WEIGHTINGS",
    "as_list",
    "interaction_matrix",
    "is_scalar_id",
    "lookup",
    "lookup_one",
    "normalize_ids",
    "transform",
]

#: How raw interaction weights become matrix values (before ALS's ``alpha``).
WEIGHTINGS: tuple[str, ...] = ("binary", "log", "raw")


def as_list(values: Any) -> list[Any] | np.ndarray:
    """A scalar id becomes a one-element list; arrays and Series stay array-like."""
    if isinstance(values, (str, bytes, int, np.integer, float, np.floating)):
        return [values]
    if isinstance(values, (pd.Series, pd.Index)):
        return values.to_numpy()
    if isinstance(values, np.ndarray):
        return values.ravel()
    if isinstance(values, Iterable):
        return list(values)
    return [values]


def normalize_ids(values: Any) -> tuple[np.ndarray, str]:
    """Normalise ids to ``(array, kind)`` with kind ``"int"`` (int64) or ``"str"`` (object)."""
    s = pd.Series(as_list(values))
    if s.empty:
        return np.array([], dtype=np.int64), "int"
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(str).to_numpy(dtype=object), "str"
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy(dtype=np.int64), "int"
    if pd.api.types.is_float_dtype(s.dtype):
        v = s.to_numpy(dtype=np.float64)
        if np.isfinite(v).all() and (v == np.round(v)).all() and np.abs(v).max() < 2**62:
            return v.astype(np.int64), "int"
    return s.astype(str).to_numpy(dtype=object), "str"


def _coerce(values: Any, kind: str) -> np.ndarray:
    """Query ids in the model's id kind; ids that cannot be of that kind become unmatchable."""
    s = pd.Series(as_list(values))
    if kind == "str":
        return s.astype(str).to_numpy(dtype=object)
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(num) & (num == np.round(num))
    out = np.full(len(num), np.iinfo(np.int64).min, dtype=np.int64)  # never a real id
    out[ok] = num[ok].astype(np.int64)
    return out


def lookup(index: pd.Index, kind: str, values: Any) -> np.ndarray:
    """Positions of ``values`` in ``index`` (``-1`` for unknown ids)."""
    q = _coerce(values, kind)
    if len(q) == 0:
        return np.array([], dtype=np.int64)
    return index.get_indexer(q).astype(np.int64)


def lookup_one(index: pd.Index, kind: str, value: Any) -> int:
    """Position of one id in ``index`` (``-1`` when unknown); the fast path of one request."""
    try:
        if kind == "int":
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                key: Any = int(value)
            else:
                f = float(value)
                if not (np.isfinite(f) and f == round(f)):
                    return -1
                key = (
                    int(value)
                    if isinstance(value, str) and value.strip().lstrip("-").isdigit()
                    else int(f)
                )
        else:
            key = str(value)
        pos = index.get_loc(key)
    except (KeyError, TypeError, ValueError, OverflowError):
        return -1
    return int(pos) if isinstance(pos, (int, np.integer)) else -1


def is_scalar_id(value: Any) -> bool:
    """Whether ``value`` is one id rather than a list of ids."""
    return isinstance(value, (str, bytes, int, float, np.integer, np.floating))


def transform(values: np.ndarray, weighting: str) -> np.ndarray:
    """Apply a weighting scheme to aggregated interaction weights."""
    if weighting == "binary":
        return np.ones_like(values, dtype=np.float32)
    if weighting == "log":
        return np.log1p(values).astype(np.float32)
    if weighting == "raw":
        return values.astype(np.float32)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")


def interaction_matrix(
    interactions: pd.DataFrame, weighting: str
) -> tuple[sp.csr_matrix, np.ndarray, str, np.ndarray, str]:
    """Validate ``interactions`` and build the weighted user x item CSR matrix.

    Duplicate (user, item) rows are summed before ``weighting`` is applied; pairs
    whose total weight is zero are dropped.

    Returns:
        ``(matrix, user_ids, user_kind, item_ids, item_kind)``.

    Raises:
        DataError: missing columns, null ids, negative or non-finite weights, or no rows.
    """
    if not isinstance(interactions, pd.DataFrame):
        raise DataError("interactions must be a pandas DataFrame with user_id and item_id")
    missing = [c for c in ("user_id", "item_id") if c not in interactions.columns]
    if missing:
        raise DataError(f"interactions lack the column(s) {', '.join(missing)}")
    if interactions.empty:
        raise DataError("interactions are empty: nothing to train on")
    for col in ("user_id", "item_id"):
        nulls = int(interactions[col].isna().sum())
        if nulls:
            raise DataError(f"interactions column {col!r} has {nulls} null value(s)")
    if "weight" in interactions.columns:
        w = pd.to_numeric(interactions["weight"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            raise DataError(
                f"interactions column 'weight' has {int(bad.sum())} missing, non-numeric, "
                "infinite or negative value(s)"
            )
    else:
        w = np.ones(len(interactions), dtype=np.float64)
    users, user_kind = normalize_ids(interactions["user_id"])
    items, item_kind = normalize_ids(interactions["item_id"])
    u_codes, u_ids = pd.factorize(users)
    i_codes, i_ids = pd.factorize(items)
    m = sp.csr_matrix(
        (w, (u_codes, i_codes)), shape=(len(u_ids), len(i_ids)), dtype=np.float64
    )  # csr construction sums duplicates
    m.sum_duplicates()
    m.eliminate_zeros()
    if m.nnz == 0:
        raise DataError("every interaction has weight 0: nothing to train on")
    keep_u = np.flatnonzero(np.diff(m.indptr) > 0)
    keep_i = np.flatnonzero(m.getnnz(axis=0) > 0)
    if len(keep_u) < m.shape[0] or len(keep_i) < m.shape[1]:
        m = m[keep_u][:, keep_i].tocsr()
        u_ids, i_ids = np.asarray(u_ids)[keep_u], np.asarray(i_ids)[keep_i]
    m.sort_indices()
    out = sp.csr_matrix(
        (transform(m.data, weighting), m.indices.astype(np.int32), m.indptr.astype(np.int32)),
        shape=m.shape,
    )
    return out, _ids_array(u_ids, user_kind), user_kind, _ids_array(i_ids, item_kind), item_kind


def _ids_array(ids: Any, kind: str) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64 if kind == "int" else object)
