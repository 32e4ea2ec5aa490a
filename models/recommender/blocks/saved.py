"""Fitted blocks as one workspace file: save atomically, load, forget persons.

A :class:`SavedBlocks` holds a :class:`~models.recommender.blocks.BlockSet`
keyed by the configured block names (``cart_cross_sell`` -> a
``bought_together`` block), each block's default ``k``, a version string and
metadata (``as_of``, the personal block's champion version). It is written with
:mod:`pickle` into a temporary file next to the target and renamed into place,
so a reader (a serving worker, ``cip recommend``) never sees half a file. The
file is the workspace's own (``models/blocks/blocks.pkl``); never load one from
an untrusted source.

:func:`forget_users` removes persons' histories (purchases, views, repeat
purchase statistics, personal factors) from the fitted state: afterwards they
are served as unknown people. Item-level aggregates (co-purchase lift,
popularity) stay until the next fit, like the recommender's item factors.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cip.models.recommender.blocks import BlockSet
from cip.profiles.errors import DataError, NotFoundError

__all__ = [
    "SavedBlocks",
    "save_blocks",
    "load_blocks",
    "forget_users",
    "fit_named_blocks",
    "FORMAT",
]

#: Format tag of the file (checked on load).
FORMAT = "cip-blocks/1"

#: Person ids of erased rows start with this (never a real id: a NUL byte).
_ERASED = "\x00erased:"


@dataclass
class SavedBlocks:
    """Fitted named blocks plus what a caller needs to serve them.

    Attributes:
        blocks: the fitted :class:`BlockSet` (keys: configured block names).
        k: default number of items per block name.
        kinds: block name -> kind (``personal``, ``bought_together``, ...).
        version: identifies this fit (``blocks-<as_of day>-<fitted at>``).
        meta: ``as_of``, ``fitted_at``, ``personal_model_version``, MLflow ``run_id``...
    """

    blocks: BlockSet
    k: dict[str, int]
    kinds: dict[str, str]
    version: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The configured block names, in configuration order."""
        return list(self.blocks.blocks)


def save_blocks(saved: SavedBlocks, path: str | os.PathLike[str]) -> Path:
    """Write ``saved`` to ``path`` atomically (temporary file, fsync, rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pickle.dump({"format": FORMAT, "saved": saved}, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def load_blocks(path: str | os.PathLike[str]) -> SavedBlocks:
    """Read a file written by :func:`save_blocks`.

    Raises:
        NotFoundError: no such file (fit the blocks first).
        DataError: not a blocks file of this format.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"no fitted blocks at {p}: run `cip recommend fit-blocks` first")
    with open(p, "rb") as fh:
        try:
            doc = pickle.load(fh)  # noqa: S301 - the workspace's own file (see module docstring)
        except Exception as exc:
            raise DataError(f"{p} is not a readable blocks file ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{p} is not a {FORMAT} file: fit the blocks again")
    return doc["saved"]


def _zero_rows(m: sp.csr_matrix | None, rows: np.ndarray) -> sp.csr_matrix | None:
    if m is None or len(rows) == 0:
        return m
    keep = np.ones(m.shape[0])
    keep[rows] = 0.0
    out = (sp.diags(keep) @ m).tocsr()
    out.eliminate_zeros()
    return out


def forget_users(saved: SavedBlocks, user_ids: list[str]) -> int:
    """Remove the persons' histories from ``saved`` in place; returns how many were found.

    Their rows in the purchase, recency and view matrices and in every block's
    per-person arrays become empty, their ids are replaced by a tombstone (so
    they are unknown people from now on), and the personal block's model drops
    their factors. Save the result with :func:`save_blocks`.
    """
    h = saved.blocks.history
    rows = h.user_rows([str(u) for u in user_ids])
    rows = np.unique(rows[rows >= 0])
    if len(rows) == 0:
        return 0
    h.counts = _zero_rows(h.counts, rows)
    h.last_age = _zero_rows(h.last_age, rows)
    h.views = _zero_rows(h.views, rows)
    h.purchases = h.purchases[~h.purchases["u"].isin(rows)].reset_index(drop=True)
    for block in saved.blocks.blocks.values():
        for attr in ("freq_", "last_", "log_interval_"):
            m = getattr(block, attr, None)
            if isinstance(m, sp.csr_matrix) and m.shape[0] == len(h.users):
                setattr(block, attr, _zero_rows(m, rows))
        model = getattr(block, "model_", None)
        if model is not None and hasattr(model, "drop_users"):
            model.drop_users([str(u) for u in user_ids])
    users = h.users.to_numpy(dtype=object).copy()
    users[rows] = [f"{_ERASED}{r}" for r in rows]
    h.users = pd.Index(users)
    h.__dict__.pop("row_of", None)  # the cached id -> row map
    saved.meta["forgotten"] = int(saved.meta.get("forgotten", 0)) + len(rows)
    saved.meta["forgotten_at"] = dt.datetime.now(dt.UTC).isoformat()
    return int(len(rows))


def fit_named_blocks(
    lines: pd.DataFrame,
    products: pd.DataFrame | None,
    views: pd.DataFrame | None,
    spec: dict[str, dict[str, Any]],
    as_of: Any = None,
    personal_model: Any = None,
    personal_model_version: str | None = None,
) -> SavedBlocks:
    """Fit named blocks (``spec``: name -> ``{kind, k, params, rules}``) into a :class:`SavedBlocks`.

    ``personal``-kind blocks use ``personal_model`` (the champion recommender) when
    given, else fit their own ALS. A rule naming a product field that does not
    exist fails here, naming the block.
    """
    from cip.models.recommender.blocks import PersonalBlock, build_history, make_block
    from cip.models.recommender.blocks.rules import Rules
    from cip.profiles.errors import ConfigError

    history = build_history(lines, products, views, as_of)
    fitted: dict[str, Any] = {}
    rules: dict[str, Rules] = {}
    for name, b in spec.items():
        kind, params = b["kind"], dict(b.get("params") or {})
        try:
            if kind == "personal":
                block = PersonalBlock(model=personal_model, **params)
            else:
                block = make_block(kind, **params)
            fitted[name] = block.fit(history)
            rules[name] = Rules.from_dict(b.get("rules") or {})
        except ConfigError as exc:
            raise ConfigError(f"blocks.{name}: {exc}") from None
    bs = BlockSet(history, fitted, rules)
    for name in fitted:
        try:
            bs._rule_arrays(bs.rules[name])
        except ConfigError as exc:
            raise ConfigError(f"blocks.{name}.rules: {exc}") from None
        except DataError:
            pass  # rules that leave nothing: a clear error per request
    now = dt.datetime.now(dt.UTC)
    return SavedBlocks(
        bs,
        {n: int(b.get("k", 10)) for n, b in spec.items()},
        {n: str(b["kind"]) for n, b in spec.items()},
        f"blocks-{history.as_of:%Y%m%d}-{now:%Y%m%dT%H%M%S}",
        {
            "as_of": history.as_of.isoformat(),
            "fitted_at": now.isoformat(),
            "personal_model_version": personal_model_version if personal_model else None,
        },
    )
