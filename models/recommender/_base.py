"""The shared recommender interface (in the spirit of ``implicit``'s ``RecommenderBase``).

Every algorithm implements ``_fit`` and one scoring hook; this base class owns
the id maps, the business rules (``exclude_seen``, ``items=`` allow-lists),
popularity backfill to ``n`` items, fold-in for item lists, erasure of users
and persistence as ``.npz`` arrays plus a JSON file (never a pickle).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.models.recommender import _persist, _rank
from cip.models.recommender._data import (
    WEIGHTINGS,
    as_list,
    interaction_matrix,
    is_scalar_id,
    lookup,
    lookup_one,
    transform,
)
from cip.profiles.errors import ConfigError, NotFoundError
from threadpoolctl import ThreadpoolController

__all__ = ["Recommender"]

log = logging.getLogger(__name__)

#: Dense score blocks are kept under this many cells (rows x items) per chunk.
_BLOCK_CELLS = 1 << 22


_CONTROLLER: ThreadpoolController | None = None


def _single_blas(method: Any) -> Any:
    """Run a query method with one BLAS thread (see :func:`one_blas_thread`)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_blas_thread():
            return method(*args, **kwargs)

    return wrapper


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS to one thread (implicit's advice: BLAS threads fight its own threads).

    Measured here: one-user scoring over 100 k items took 6.2 ms CPU with 2 OpenBLAS
    threads and 1.4 ms with one. The controller is built once; a limit costs ~3 us.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


class Recommender:
    """Base class: ``fit`` / ``recommend`` / ``recommend_for_items`` / ``similar_items``.

    Subclasses declare ``algorithm``, their fitted arrays in ``_arrays`` (saved to
    ``.npz``), the arrays indexed by user in ``_user_arrays`` (cut by
    :meth:`drop_users`), and implement ``_fit(X)`` and ``_dense_scores(kind, q)``
    (or override ``_personal_topk`` for a faster path).
    """

    algorithm: ClassVar[str] = "base"
    _arrays: ClassVar[tuple[str, ...]] = ()
    _user_arrays: ClassVar[tuple[str, ...]] = ()
    #: Popularity *is* the model (the popularity baseline): its picks are not "backfilled".
    _popularity_is_model: ClassVar[bool] = False
    #: implicit's advice: BLAS threads inside its solvers fight its own threads.
    _limit_blas_threads: ClassVar[bool] = True
    weighting: str
    random_state: Any

    # -- scikit-learn style parameters ---------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__``."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> Recommender:
        """Set hyperparameters (takes effect at the next ``fit``)."""
        for k, v in params.items():
            if k not in self._param_names():
                raise ConfigError(f"{type(self).__name__} has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_params(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")

    # -- fitting -------------------------------------------------------------
    def fit(self, interactions: pd.DataFrame) -> Recommender:
        """Fit on interactions ``user_id, item_id[, weight, ts]`` (ids: any str or int).

        Duplicate (user, item) rows are summed, then ``weighting`` is applied
        (``binary``: 1, ``log``: log(1 + w), ``raw``: w).
        """
        self._check_params()
        x, users, ukind, items, ikind = interaction_matrix(interactions, self.weighting)
        self.user_ids_, self.user_kind_ = users, ukind
        self.item_ids_, self.item_kind_ = items, ikind
        self.user_items_ = x
        self.item_popularity_ = np.diff(x.tocsc().indptr).astype(np.float32)
        self._reset_caches()
        with one_blas_thread() if self._limit_blas_threads else contextlib.nullcontext():
            self._fit(x)
        log.info(
            "fitted %s on %d users x %d items (%d interactions)",
            self.algorithm,
            len(users),
            len(items),
            x.nnz,
        )
        return self

    def _fit(self, x: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _reset_caches(self) -> None:
        self._cache: dict[str, Any] = {}

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_items_"):
            raise NotFoundError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def _user_index(self) -> pd.Index:
        if "uidx" not in self._cache:
            self._cache["uidx"] = pd.Index(self.user_ids_)
        return self._cache["uidx"]

    def _item_index(self) -> pd.Index:
        if "iidx" not in self._cache:
            self._cache["iidx"] = pd.Index(self.item_ids_)
        return self._cache["iidx"]

    @property
    def n_users_(self) -> int:
        return self.user_items_.shape[0]

    @property
    def n_items_(self) -> int:
        return self.user_items_.shape[1]

    # -- public queries ------------------------------------------------------
    def known_users(self, user_ids: Any) -> np.ndarray:
        """Boolean mask: which of ``user_ids`` the model has personal data for."""
        self._check_fitted()
        return lookup(self._user_index(), self.user_kind_, user_ids) >= 0

    def known_items(self, item_ids: Any) -> np.ndarray:
        """Boolean mask: which of ``item_ids`` the model was trained on."""
        self._check_fitted()
        return lookup(self._item_index(), self.item_kind_, item_ids) >= 0

    def popular_items(self, n: int = 10, items: Any = None) -> pd.DataFrame:
        """The ``n`` most popular candidates: DataFrame ``item_id, score, rank``.

        ``score`` is the share of training users who interacted with the item.
        """
        self._check_fitted()
        n = _rank.check_n(n)
        cand = self._candidates(items)
        pos = cand.pop_order[:n]
        return _rank.frame(
            ("item_id", "score", "rank"),
            (
                cand.ids[pos],
                cand.pop_score[pos].astype(np.float64),
                np.arange(1, len(pos) + 1, dtype=np.int64),
            ),
        )

    @_single_blas
    def recommend(
        self, user_ids: Any, n: int = 10, exclude_seen: bool = True, items: Any = None
    ) -> pd.DataFrame:
        """Top-``n`` items per user: DataFrame ``user_id, item_id, score, rank, backfilled``.

        Args:
            user_ids: one id or a list of ids; unknown users get popular items.
            n: items per user; always reached when the candidate set allows.
            exclude_seen: drop items the user interacted with in training
                (set ``False`` for goods that are bought again).
            items: allow-list of candidate item ids (in stock, category...); ``None``: all.

        Rows come in the order of ``user_ids`` and rank. ``backfilled`` marks
        popular items added because the personal model had fewer than ``n``.
        """
        self._check_fitted()
        n = _rank.check_n(n)
        cand = self._candidates(items)
        if is_scalar_id(user_ids):  # one user: no id-array round trips
            item_ids, score, filled = self._recommend_one(user_ids, n, exclude_seen, cand)
            return _rank.frame(
                ("user_id", "item_id", "score", "rank", "backfilled"),
                (
                    np.array([user_ids] * len(item_ids)),
                    item_ids,
                    score,
                    np.arange(1, len(item_ids) + 1, dtype=np.int64),
                    filled,
                ),
            )
        queries = as_list(user_ids)
        rows = lookup(self._user_index(), self.user_kind_, queries)
        known = np.flatnonzero(rows >= 0)
        parts = [
            self._rank_block("users", rows[known[s]], known[s], n, exclude_seen, cand)
            for s in self._chunks(len(known))
        ]
        unknown = np.flatnonzero(rows < 0)
        if len(unknown):
            parts.append(self._fill_only(unknown, n, cand))
        out_rows, item_ids, score, rank, filled = _rank.concat(parts)
        order = np.lexsort((rank, out_rows))
        return _rank.frame(
            ("user_id", "item_id", "score", "rank", "backfilled"),
            (
                _rank.query_array(queries)[out_rows[order]],
                item_ids[order],
                score[order],
                rank[order],
                filled[order],
            ),
        )

    @_single_blas
    def recommend_one(
        self, user_id: Any, n: int = 10, exclude_seen: bool = True, items: Any = None
    ) -> _rank.Ranked:
        """:meth:`recommend` for one user as arrays (the serving hot path, no DataFrame).

        Returns :class:`Ranked` ``(item_ids, scores, backfilled)`` in rank order,
        the same rows :meth:`recommend` gives for ``user_id``.
        """
        self._check_fitted()
        return self._recommend_one(user_id, _rank.check_n(n), exclude_seen, self._candidates(items))

    def _recommend_one(
        self, user_id: Any, n: int, exclude_seen: bool, cand: _rank.Candidates
    ) -> _rank.Ranked:
        row = lookup_one(self._user_index(), self.user_kind_, user_id)
        zero = np.zeros(1, dtype=np.int64)
        part = (
            self._rank_block("users", np.array([row]), zero, n, exclude_seen, cand)
            if row >= 0
            else self._fill_only(zero, n, cand)
        )
        _, item_ids, score, _, filled = part
        return _rank.Ranked(item_ids, score, filled)

    @_single_blas
    def recommend_for_items(
        self, item_ids: Any, n: int = 10, exclude_seen: bool = True, items: Any = None
    ) -> pd.DataFrame:
        """Recommendations for a visitor known only by items (fold-in, no retraining).

        ``item_ids`` are the items the visitor viewed or bought (repeats count as
        repeated interactions). Returns DataFrame ``item_id, score, rank, backfilled``.
        """
        self._check_fitted()
        n = _rank.check_n(n)
        idx = lookup(self._item_index(), self.item_kind_, item_ids)
        idx = idx[idx >= 0]
        cand = self._candidates(items)
        if len(idx) == 0:
            part = self._fill_only(np.zeros(1, dtype=np.int64), n, cand)
        else:
            cols, counts = np.unique(idx, return_counts=True)
            hist = sp.csr_matrix(
                (
                    transform(counts.astype(np.float64), self.weighting),
                    cols.astype(np.int32),
                    np.array([0, len(cols)], dtype=np.int32),
                ),
                shape=(1, self.n_items_),
            )
            part = self._rank_block("history", hist, np.zeros(1, np.int64), n, exclude_seen, cand)
        _, ids, score, rank, filled = part
        return _rank.frame(("item_id", "score", "rank", "backfilled"), (ids, score, rank, filled))

    @_single_blas
    def similar_items(self, item_ids: Any, n: int = 10, items: Any = None) -> pd.DataFrame:
        """Items most similar to each of ``item_ids`` (never the item itself).

        Returns DataFrame ``item_id, similar_item_id, score, rank, backfilled``;
        unknown items (and items with fewer than ``n`` neighbours) get popular items.
        """
        self._check_fitted()
        n = _rank.check_n(n)
        queries = as_list(item_ids)
        rows = lookup(self._item_index(), self.item_kind_, queries)
        cand = self._candidates(items)
        known = np.flatnonzero(rows >= 0)
        parts = [
            self._rank_block("items", rows[known[s]], known[s], n, True, cand)
            for s in self._chunks(len(known))
        ]
        unknown = np.flatnonzero(rows < 0)
        if len(unknown):
            parts.append(self._fill_only(unknown, n, cand))
        out_rows, sim_ids, score, rank, filled = _rank.concat(parts)
        order = np.lexsort((rank, out_rows))
        return _rank.frame(
            ("item_id", "similar_item_id", "score", "rank", "backfilled"),
            (
                _rank.query_array(queries)[out_rows[order]],
                sim_ids[order],
                score[order],
                rank[order],
                filled[order],
            ),
        )

    # -- erasure ---------------------------------------------------------------
    def drop_users(self, user_ids: Any) -> int:
        """Erase users: their id, interaction row and personal factors go at once.

        Item-level parameters (item factors, similarities) are aggregates over
        many people; they are rebuilt without the erased users at the next
        training, once the store no longer holds their interactions.
        Returns the number of users removed; they are served as unknown users.
        """
        self._check_fitted()
        rows = lookup(self._user_index(), self.user_kind_, user_ids)
        rows = np.unique(rows[rows >= 0])
        if len(rows) == 0:
            return 0
        keep = np.ones(self.n_users_, dtype=bool)
        keep[rows] = False
        self.user_ids_ = self.user_ids_[keep]
        self.user_items_ = self.user_items_[keep].tocsr()
        for name in self._user_arrays:
            setattr(self, name, getattr(self, name)[keep])
        self.item_popularity_ = np.diff(self.user_items_.tocsc().indptr).astype(np.float32)
        self._reset_caches()
        log.info("dropped %d user(s) from the %s model", len(rows), self.algorithm)
        return int(len(rows))

    # -- ranking machinery ---------------------------------------------------
    def _chunks(self, total: int) -> Iterator[slice]:
        dense = type(self)._personal_topk is Recommender._personal_topk
        size = max(64, min(4096, _BLOCK_CELLS // max(1, self.n_items_))) if dense else 4096
        for start in range(0, total, size):
            yield slice(start, start + size)

    def _candidates(self, items: Any) -> _rank.Candidates:
        pop = self.item_popularity_ / max(1, self.n_users_)
        if items is None:
            if "pop_order" not in self._cache:
                self._cache["pop_order"] = np.argsort(-pop, kind="stable")
            order = self._cache["pop_order"]
            return _rank.Candidates(None, self.item_ids_, self.n_items_, order, pop)
        wanted = pd.Series(as_list(items)).drop_duplicates().to_numpy()
        idx = lookup(self._item_index(), self.item_kind_, wanted)
        return _rank.allow_list(self.item_ids_, self.item_kind_, pop, wanted, idx)

    def _rank_block(
        self,
        kind: str,
        q: Any,
        out_rows: np.ndarray,
        n: int,
        exclude_seen: bool,
        cand: _rank.Candidates,
    ) -> tuple[np.ndarray, ...]:
        if kind == "users":
            seen = _rank.csr_rows(self.user_items_, q) if exclude_seen else None
        elif kind == "history":
            seen = q if exclude_seen else None
        else:  # items: never the item itself
            seen = sp.csr_matrix(
                (np.ones(len(q), np.float32), q.astype(np.int32), np.arange(len(q) + 1)),
                shape=(len(q), self.n_items_),
            )
        seen = cand.restrict(seen)
        k = min(n, cand.n_known)
        if self._popularity_is_model or k == 0:
            chosen = np.zeros((len(out_rows), 0), dtype=np.int64)
            scores = np.zeros((len(out_rows), 0), dtype=np.float32)
        else:
            chosen, scores = self._personal_topk(kind, q, k, seen, cand)
        valid = scores > _rank.FLOOR
        fr, fp = _rank.backfill(cand, chosen, valid, seen, n)
        r, ids, sc, rank, filled = _rank.merge(
            cand, chosen, scores, valid, fr, fp, self._popularity_is_model
        )
        return out_rows[r], ids, sc, rank, filled

    def _fill_only(self, out_rows: np.ndarray, n: int, cand: _rank.Candidates) -> tuple:
        b = len(out_rows)
        chosen = np.zeros((b, 0), dtype=np.int64)
        scores = np.zeros((b, 0), dtype=np.float32)
        valid = np.zeros((b, 0), dtype=bool)
        fr, fp = _rank.backfill(cand, chosen, valid, None, n)
        r, ids, sc, rank, filled = _rank.merge(
            cand, chosen, scores, valid, fr, fp, self._popularity_is_model
        )
        return out_rows[r], ids, sc, rank, filled

    def _personal_topk(
        self, kind: str, q: Any, k: int, seen: sp.csr_matrix | None, cand: _rank.Candidates
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` candidate positions and scores per query (generic dense path)."""
        s = self._dense_scores(kind, q)
        if cand.known is not None:
            s = s[:, cand.known]
        s = np.where(np.isfinite(s), s, -np.inf).astype(np.float32, copy=False)
        if seen is not None and seen.nnz:
            r, c = seen.nonzero()
            s[r, c] = -np.inf
        chosen, scores = _rank.dense_topk(s, k)
        return chosen, np.where(np.isfinite(scores), scores, -np.inf)

    def _dense_scores(self, kind: str, q: Any) -> np.ndarray:
        """Scores (queries x all items); ``-inf`` marks no candidate."""
        raise NotImplementedError

    # -- persistence -----------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save to the folder ``path``: ``arrays.npz`` plus ``model.json`` (no pickles)."""
        self._check_fitted()
        return _persist.save(self, path)

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], data: Any) -> Recommender:
        return _persist.restore(cls, meta, data)
