"""The in-memory snapshot: catalog, identity map, purchases, consent, scores, erasures.

Built from the in-memory copy of the store (:mod:`serving._snapshot`) with
vectorised pandas/numpy; lookups at request time are dict and array operations.

Consent policy for personalisation (``serving.personalization_consent``):

* ``opt_out`` (default): an explicit refusal (``consent_personalization`` false
  with a statement time, or false where the profile has no statement times)
  turns personalisation off; no statement allows on-site personalisation. This
  follows GDPR's legitimate-interest reading for on-site recommendations;
  exports always require explicit consent for their purpose (activation).
* ``opt_in``: only an explicit ``true`` allows it.

An explicit refusal of ``profiling`` withholds the person's scores.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from cip.profiles.errors import DataError
from cip.profiles.privacy import hash_identifier, stated_refusals
from cip.profiles.sql import quote_ident
from cip.profiles.store import DuckDBStore

__all__ = ["Snapshot", "build_snapshot"]

log = logging.getLogger(__name__)

_EMPTY = np.array([], dtype=object)


@dataclass(eq=False)
class Snapshot:
    """Read-only data of one reload (treat every attribute as immutable)."""

    store: DuckDBStore
    item_ids: np.ndarray
    in_stock: np.ndarray
    allow: dict[tuple[str | None, bool], np.ndarray]
    catalog_set: frozenset[str]
    out_of_stock: frozenset[str]
    uid_by_customer: dict[str, str]
    uid_by_anonymous: dict[str, str]
    purchases: dict[str, np.ndarray]
    popular: np.ndarray
    personalization_denied: frozenset[str]
    personalization_granted: frozenset[str]
    profiling_denied: frozenset[str]
    consent_policy: str
    scores: pd.DataFrame | None
    scores_as_of: str | None
    erased_uids: frozenset[str]
    tombstones: frozenset[tuple[str, str]]
    timings: dict[str, float] = field(default_factory=dict)
    _hashes: dict[bytes, frozenset[tuple[str, str]]] = field(default_factory=dict)
    _popular: dict[tuple[str | None, bool], np.ndarray] = field(default_factory=dict)

    @property
    def has_catalog(self) -> bool:
        return len(self.item_ids) > 0

    def candidates(self, category: str | None, in_stock_only: bool) -> np.ndarray | None:
        """Allowed item ids, or None for "every item the model knows"."""
        if not self.has_catalog:
            if category is not None:
                raise DataError("there is no product catalog, so no category filter")
            return None
        key = (category, bool(in_stock_only))
        if key not in self.allow:
            known = sorted(c for c, _ in self.allow if c is not None)
            shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
            raise DataError(f"unknown category {category!r} (known: {shown or 'none'})")
        return self.allow[key]

    def popular_for(self, category: str | None, in_stock_only: bool) -> np.ndarray:
        """Items by number of buyers within the allowed candidates (cached per filter)."""
        key = (category, bool(in_stock_only))
        if key not in self._popular:
            cand = self.candidates(category, in_stock_only)
            pop = self.popular
            self._popular[key] = pop if cand is None else pop[_isin(pop, cand)]
        return self._popular[key]

    def person(self, customer_id: str | None, anonymous_id: str | None) -> str | None:
        """The unified id (or, without identity resolution, the customer id) of a visitor."""
        if customer_id is not None:
            uid = self.uid_by_customer.get(customer_id)
            if uid is not None:
                return uid
            if not self.uid_by_customer:
                return customer_id
        if anonymous_id is not None:
            return self.uid_by_anonymous.get(anonymous_id)
        return None

    def personalization_allowed(self, uid: str | None) -> bool:
        if uid is None:
            return self.consent_policy == "opt_out"
        if self.consent_policy == "opt_in":
            return uid in self.personalization_granted
        return uid not in self.personalization_denied

    def erased_hashes(self, salt: bytes) -> set[tuple[str, str]]:
        if salt not in self._hashes:
            self._hashes[salt] = frozenset(
                {("unified_id", hash_identifier("unified_id", u, salt)) for u in self.erased_uids}
                | self.tombstones
            )
        return set(self._hashes[salt])

    def close(self) -> None:
        """Nothing to release eagerly: requests may still hold this snapshot."""


def _isin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hash-based membership of string ids (``np.isin`` on objects is quadratic)."""
    return pd.Series(a, dtype=object).isin(pd.Series(b, dtype=object)).to_numpy()


def _table(mem: DuckDBStore, name: str) -> pd.DataFrame | None:
    return mem.sql(f"SELECT * FROM {quote_ident(name)}") if mem.has_table(name) else None


def _catalog(mem: DuckDBStore) -> tuple[np.ndarray, np.ndarray, dict, frozenset[str]]:
    df = _table(mem, "products")
    if df is None or df.empty:
        return _EMPTY, np.zeros(0, bool), {}, frozenset()
    ids = df["item_id"].astype(str).to_numpy(dtype=object)
    stock = df["in_stock"].fillna(True).astype(bool).to_numpy()
    cat = df["category"].astype(object).where(df["category"].notna(), None).to_numpy()
    allow: dict[tuple[str | None, bool], np.ndarray] = {
        (None, False): ids,
        (None, True): ids[stock],
    }
    codes, uniques = pd.factorize(pd.Series(cat, dtype=object), use_na_sentinel=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for k, c in enumerate(uniques):
        pos = order[bounds[k] : bounds[k + 1]]
        allow[(str(c), False)] = ids[pos]
        allow[(str(c), True)] = ids[pos[stock[pos]]]
    return ids, stock, allow, frozenset(ids[~stock].tolist())


def _grouped(df: pd.DataFrame, key: str, value: str) -> dict[str, np.ndarray]:
    if df.empty:
        return {}
    df = df.sort_values(key, kind="stable")
    keys = df[key].astype(str).to_numpy()
    vals = df[value].astype(str).to_numpy(dtype=object)
    cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate([[0], cut])
    return dict(zip(keys[starts].tolist(), np.split(vals, cut), strict=True))


def _consent(mem: DuckDBStore, purpose: str) -> tuple[frozenset[str], frozenset[str]]:
    """``(explicitly refused, explicitly granted)`` unified ids for ``purpose``."""
    if not mem.has_table("profiles"):
        return frozenset(), frozenset()
    col = f"consent_{purpose}"
    if col not in set(mem.sql("SELECT * FROM profiles WHERE FALSE").columns):
        return frozenset(), frozenset()
    yes = mem.sql(f"SELECT unified_id FROM profiles WHERE {col} IS TRUE")
    return frozenset(stated_refusals(mem, purpose)), frozenset(yes["unified_id"].astype(str))


def _scores(mem: DuckDBStore) -> tuple[pd.DataFrame | None, str | None]:
    df = _table(mem, "scores")
    if df is None or df.empty:
        return None, None
    df = df.drop_duplicates("unified_id", keep="last").copy()
    df["unified_id"] = df["unified_id"].astype(str)
    as_of = pd.Timestamp(df["as_of"].iloc[0]).isoformat()
    df["reasons"] = [_json_obj(x) for x in df["reasons"].tolist()]
    return df.set_index("unified_id"), as_of


def _json_obj(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        v = json.loads(text)
    except ValueError:
        return {"text": text}
    return v if isinstance(v, dict) else {"reasons": v}


def build_snapshot(
    mem: DuckDBStore, consent_policy: str = "opt_out", timings: dict[str, float] | None = None
) -> Snapshot:
    """Derive the request-time structures from the in-memory copy of the store."""
    ids, stock, allow, oos = _catalog(mem)
    idm = _table(mem, "id_map")
    by_cust: dict[str, str] = {}
    by_anon: dict[str, str] = {}
    if idm is not None and not idm.empty:
        for kind, target in (("customer_id", by_cust), ("anonymous_id", by_anon)):
            part = idm[idm["identifier_type"] == kind]
            target.update(
                zip(
                    part["identifier_value"].astype(str).tolist(),
                    part["unified_id"].astype(str).tolist(),
                    strict=True,
                )
            )
    pur = _table(mem, "purchases")
    purchases = _grouped(pur, "person", "item_id") if pur is not None else {}
    popular = _EMPTY
    if pur is not None and not pur.empty:
        counts = pur["item_id"].astype(str).value_counts(sort=False)
        counts = counts.sort_index().sort_values(ascending=False, kind="stable")
        popular = counts.index.to_numpy(dtype=object)
        if len(ids):
            popular = popular[_isin(popular, ids)]
    if len(ids):  # catalog items nobody bought come last
        popular = np.concatenate([popular, ids[~_isin(ids, popular)]])
    p_no, p_yes = _consent(mem, "personalization")
    prof_no, _ = _consent(mem, "profiling")
    scores, as_of = _scores(mem)
    er = _table(mem, "erased")
    tb = _table(mem, "_tombstones")
    snap = Snapshot(
        store=mem,
        item_ids=ids,
        in_stock=stock,
        allow=allow,
        catalog_set=frozenset(ids.tolist()),
        out_of_stock=oos,
        uid_by_customer=by_cust,
        uid_by_anonymous=by_anon,
        purchases=purchases,
        popular=popular,
        personalization_denied=p_no,
        personalization_granted=p_yes,
        profiling_denied=prof_no,
        consent_policy=consent_policy,
        scores=scores,
        scores_as_of=as_of,
        erased_uids=frozenset(er["unified_id"].astype(str)) if er is not None else frozenset(),
        tombstones=frozenset(
            zip(tb["identifier_type"].astype(str), tb["identifier_hash"].astype(str), strict=True)
        )
        if tb is not None
        else frozenset(),
        timings=dict(timings or {}),
    )
    log.info(
        "snapshot: %d products, %d people with purchases, %d scores, %d erased",
        len(ids),
        len(purchases),
        0 if scores is None else len(scores),
        len(snap.erased_uids),
    )
    return snap
