"""Reason codes from per-feature contributions, built column-wise (Arrow compute, no row loops)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["reason_frame", "format_values", "join_reasons_json"]


def format_values(values: np.ndarray) -> pa.Array:
    """Human-readable numbers: rounded to 2 decimals, integers without ".0", NaN as "missing"."""
    v = np.round(np.asarray(values, dtype=np.float64), 2)
    s = pc.cast(pa.array(v, from_pandas=False), pa.string())
    return pc.if_else(pa.array(np.isnan(v)), pa.scalar("missing"), s)


def reason_frame(
    X: np.ndarray,
    contrib: np.ndarray,
    names: Sequence[str],
    descriptions: Mapping[str, str],
    effects: tuple[str, str],
    top: int,
) -> pd.DataFrame:
    """The ``top`` features with the largest contributions per row, as readable reasons.

    Args:
        X: feature values, shape (n, f).
        contrib: contributions to the positive class score, shape (n, f).
        names: the f feature names.
        descriptions: feature -> description.
        effects: phrases for positive and non-positive contributions, e.g.
            ``("raises churn risk", "lowers churn risk")``.
        top: reasons per row (at most f).

    Returns:
        DataFrame with ``feature_k``, ``value_k``, ``contribution_k``, ``reason_k``.
    """
    n, f = contrib.shape
    top = max(0, min(int(top), f))
    if top == 0 or n == 0:
        cols = {}
        for k in range(1, top + 1):
            cols |= {
                f"feature_{k}": pd.Series([], dtype="string"),
                f"value_{k}": pd.Series([], dtype="float64"),
                f"contribution_{k}": pd.Series([], dtype="float64"),
                f"reason_{k}": pd.Series([], dtype="string"),
            }
        return pd.DataFrame(cols)
    if top < f:
        part = np.argpartition(-contrib, top - 1, axis=1)[:, :top]
        order = np.argsort(-np.take_along_axis(contrib, part, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
    else:
        idx = np.argsort(-contrib, axis=1, kind="stable")
    name_arr = pa.array([str(x) for x in names])
    prefix = pa.array([f"{x} = " for x in names])
    suffix = pa.array([f" ({descriptions.get(x, x)}) " for x in names])
    up, down = pa.scalar(effects[0]), pa.scalar(effects[1])
    cols: dict[str, object] = {}
    for k in range(top):  # a loop over the few reason slots, not over rows
        j = pa.array(idx[:, k])
        val = np.take_along_axis(X, idx[:, k : k + 1], axis=1)[:, 0]
        c = np.take_along_axis(contrib, idx[:, k : k + 1], axis=1)[:, 0]
        effect = pc.if_else(pa.array(c > 0), up, down)
        text = pc.binary_join_element_wise(
            pc.take(prefix, j), format_values(val), pc.take(suffix, j), effect, ""
        )
        cols[f"feature_{k + 1}"] = pd.Series(pc.take(name_arr, j), dtype="string")
        cols[f"value_{k + 1}"] = val
        cols[f"contribution_{k + 1}"] = c
        cols[f"reason_{k + 1}"] = pd.Series(text, dtype="string")
    return pd.DataFrame(cols)


def _json_string(s: pa.Array) -> pa.Array:
    """Arrow strings as JSON string literals (escaping backslash and double quote)."""
    esc = pc.replace_substring(pc.replace_substring(s, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise(pa.scalar('"'), esc, pa.scalar('"'), "")


def join_reasons_json(columns: Sequence[pd.Series], n: int) -> pa.Array:
    """One JSON list of strings per row, e.g. ``["reason 1", "reason 2"]``.

    Args:
        columns: reason columns (string Series of length ``n``, no nulls), in order.
        n: number of rows.
    """
    if not columns:
        return pa.array(["[]"] * n, type=pa.string())
    parts: list[pa.Array | pa.Scalar] = [pa.scalar("[")]
    for i, s in enumerate(columns):
        if i:
            parts.append(pa.scalar(", "))
        parts.append(_json_string(pa.array(s.astype("string"), type=pa.string())))
    parts.append(pa.scalar("]"))
    return pc.binary_join_element_wise(*parts, pa.scalar(""))
