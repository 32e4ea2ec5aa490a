"""Fast per-feature contributions of a LightGBM model by decision paths (Saabas).

Exact TreeSHAP (LightGBM's ``pred_contrib=True``; Lundberg et al., 2020) costs
O(trees x leaves x depth^2) per row: about 0.6 ms per row for a 70-tree model on
this machine, i.e. minutes for a million profiles. The path attribution of
Saabas (2014, "Interpreting random forests", the ``treeinterpreter`` method)
costs O(trees) per row: follow each tree from the root to the row's leaf and
credit every split's feature with the change of the node value it causes,

    phi_j(x) = sum over trees, over split nodes n on x's path with feature j,
               of value(child of n taken by x) - value(n),

so ``sum_j phi_j(x) + sum_trees value(root) = raw score(x)`` exactly (the
terms telescope). Per leaf, these credits are a fixed vector, precomputed once
from the model dump; a row's contributions are then the sum of its leaves'
vectors (LightGBM's ``pred_leaf`` and one sparse matrix product).

Path attributions can over-credit features split near the root (they are not
consistent in the Shapley sense); use TreeSHAP where exactness matters more
than speed (a few customers, a notebook, a served explanation).
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp

__all__ = ["PathTables", "path_tables", "path_contributions"]


class PathTables:
    """Per-leaf contribution vectors of every tree, stacked: ``(total leaves, n_features)``."""

    def __init__(self, matrix: np.ndarray, offsets: np.ndarray, bias: float) -> None:
        self.matrix = matrix
        self.offsets = offsets
        self.bias = bias


def path_tables(booster: lgb.Booster, num_iteration: int | None = None) -> PathTables:
    """Precompute the per-leaf Saabas vectors from ``booster.dump_model()``."""
    dump = booster.dump_model(num_iteration=num_iteration)
    n_features = int(dump["max_feature_idx"]) + 1
    blocks, offsets, bias, total = [], [], 0.0, 0
    for tree in dump["tree_info"]:
        root = tree["tree_structure"]
        n_leaves = int(tree["num_leaves"])
        block = np.zeros((n_leaves, n_features))
        if "leaf_value" in root:  # a single-leaf tree: a constant, no feature credited
            bias += float(root["leaf_value"])
        else:
            bias += float(root["internal_value"])
            stack: list[tuple[dict[str, Any], dict[int, float]]] = [(root, {})]
            while stack:  # walks the model's nodes, not the data
                node, credit = stack.pop()
                if "leaf_index" in node:
                    for j, v in credit.items():
                        block[int(node["leaf_index"]), j] = v
                    continue
                j = int(node["split_feature"])
                for side in ("left_child", "right_child"):
                    child = node[side]
                    value = (
                        child["leaf_value"] if "leaf_index" in child else child["internal_value"]
                    )
                    c = dict(credit)
                    c[j] = c.get(j, 0.0) + float(value) - float(node["internal_value"])
                    stack.append((child, c))
        blocks.append(block)
        offsets.append(total)
        total += n_leaves
    matrix = np.vstack(blocks) if blocks else np.zeros((0, n_features))
    return PathTables(matrix, np.asarray(offsets, dtype=np.int64), bias)


def path_contributions(
    booster: lgb.Booster,
    X: np.ndarray,
    tables: PathTables,
    *,
    num_iteration: int | None = None,
    num_threads: int = 0,
    chunk_rows: int = 250_000,
) -> np.ndarray:
    """Saabas contributions, shape ``(n, n_features + 1)`` like ``pred_contrib`` (bias last)."""
    n = X.shape[0]
    f = tables.matrix.shape[1]
    out = np.empty((n, f + 1))
    out[:, -1] = tables.bias
    n_trees = len(tables.offsets)
    total_leaves = tables.matrix.shape[0]
    index_type = np.int32 if total_leaves < 2**31 else np.int64
    offsets = tables.offsets.astype(index_type)[None, :]
    ones = np.ones(min(n, chunk_rows) * n_trees)
    for start in range(0, n, chunk_rows):  # bounded memory: chunks of rows, vectorised inside
        part = X[start : start + chunk_rows]
        leaves = booster.predict(
            part, pred_leaf=True, num_iteration=num_iteration, num_threads=num_threads
        ).reshape(len(part), -1)[:, :n_trees]
        cols = (leaves.astype(index_type, copy=False) + offsets).ravel()
        nnz = cols.size
        indptr = np.arange(0, nnz + 1, n_trees, dtype=np.int64 if nnz >= 2**31 else np.int32)
        # one 1 per (row, tree) at the row's leaf: rows x (all leaves of all trees)
        hits = sp.csr_matrix(
            (ones[:nnz], cols, indptr), shape=(len(part), total_leaves), copy=False
        )
        out[start : start + len(part), :-1] = hits @ tables.matrix
    return out
