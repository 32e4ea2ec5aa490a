"""A message's items: the cart, the catalog item that changed, personal recommendations.

Cart and catalog items come from the engine's own memory (``trigger_events``)
and the versioned catalog (``product_history``). Recommendations come from a
:class:`ContentProvider` - in production the BentoML service's ``/recommend``
(wired by the caller); when it cannot answer it raises
:class:`ContentUnavailable` and the engine retries the message later rather
than sending it without its recommendations.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
from cip.activation.triggers._tables import EVENTS, HISTORY
from cip.profiles.errors import CIPError
from cip.profiles.store import Store

__all__ = [
    "ContentRequest",
    "ContentResult",
    "ContentProvider",
    "ContentUnavailable",
    "PersonEvent",
    "person_events",
    "first_event",
    "cart_items",
    "item_info",
    "describe_items",
    "to_json",
    "CART_LOOKBACK",
]

#: How far before a journey's start cart additions are still part of the cart.
CART_LOOKBACK = dt.timedelta(days=30)


class ContentUnavailable(CIPError):
    """The content service cannot answer now; the message waits and is retried."""


@dataclass(frozen=True)
class ContentRequest:
    """What a provider is asked for: ``n`` items for the person, with context items."""

    trigger: str
    unified_id: str
    channel: str
    n: int
    context_items: Sequence[str] = ()
    customer_id: str | None = None  # the shop's id of the person, when known


@dataclass
class ContentResult:
    """Recommended items (dicts with at least ``item_id``; ``score`` when known) and the
    versions of the models that chose them."""

    items: list[dict[str, Any]] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)


class ContentProvider(Protocol):
    def __call__(self, request: ContentRequest) -> ContentResult: ...


#: One remembered event of a person: (ts, event_type, item_id).
PersonEvent = tuple[dt.datetime, str, str | None]


def person_events(
    store: Store, unified_ids: Iterable[str], since: dt.datetime, until: dt.datetime
) -> dict[str, list[PersonEvent]]:
    """The journaled events of each person with ``since <= ts <= until``, oldest first."""
    ids = sorted({str(u) for u in unified_ids})
    out: dict[str, list[PersonEvent]] = defaultdict(list)
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        df = store.sql(
            f"SELECT unified_id, ts, event_type, item_id FROM {EVENTS} "
            "WHERE ts >= CAST(? AS TIMESTAMP) AND ts <= CAST(? AS TIMESTAMP) "
            f"AND unified_id IN ({', '.join('?' for _ in chunk)}) ORDER BY unified_id, ts, event_id",
            [since, until, *chunk],
        )
        for uid, ts, kind, item in df.itertuples(index=False):
            out[str(uid)].append(
                (
                    pd.Timestamp(ts).to_pydatetime(),
                    str(kind),
                    item if isinstance(item, str) else None,
                )
            )
    return out


def first_event(
    events: Sequence[PersonEvent],
    types: Iterable[str],
    after: dt.datetime,
    until: dt.datetime,
    item_id: str | None = None,
) -> PersonEvent | None:
    """The first event of ``types`` (on ``item_id`` when given) with ``after < ts <= until``."""
    wanted = set(types)
    for ev in events:
        ts, kind, item = ev
        if after < ts <= until and kind in wanted and (item_id is None or item == item_id):
            return ev
    return None


def cart_items(events: Sequence[PersonEvent], start: dt.datetime, now: dt.datetime) -> list[str]:
    """Items added to the cart in ``[start - CART_LOOKBACK, now]`` and neither removed nor
    bought since their last addition, most recent first."""
    added: dict[str, dt.datetime] = {}
    gone: dict[str, dt.datetime] = {}
    for ts, kind, item in events:
        if item is None or not start - CART_LOOKBACK <= ts <= now:
            continue
        if kind == "add_to_cart":
            added[item] = max(ts, added.get(item, ts))
        elif kind in ("remove_from_cart", "purchase"):
            gone[item] = max(ts, gone.get(item, ts))
    keep = [(t, i) for i, t in added.items() if i not in gone or gone[i] < t]
    return [i for _, i in sorted(keep, key=lambda x: (-x[0].timestamp(), x[1]))]


def item_info(store: Store, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Title, category, price and stock of items from their open catalog version."""
    ids = sorted(set(item_ids))
    info: dict[str, dict[str, Any]] = {}
    if not ids or not store.has_table(HISTORY):
        return info
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        df = store.sql(
            f"SELECT item_id, title, category, price, in_stock FROM {HISTORY} "
            f"WHERE valid_to IS NULL AND item_id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        )
        for r in df.to_dict("records"):
            price = r["price"]
            info[str(r["item_id"])] = {
                "title": r["title"] if isinstance(r["title"], str) else None,
                "category": r["category"] if isinstance(r["category"], str) else None,
                "price": None if price is None or price != price else float(price),
                "in_stock": None
                if r["in_stock"] is None or pd.isna(r["in_stock"])
                else bool(r["in_stock"]),
            }
    return info


def describe_items(
    blocks: Sequence[tuple[str, str]], info: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``[(item_id, block), ...]`` -> item dicts (null fields for items without history)."""
    empty = {"title": None, "category": None, "price": None, "in_stock": None}
    return [{"item_id": i, "block": b, **info.get(i, empty)} for i, b in blocks]


def to_json(value: Any) -> str:
    """Compact, key-sorted JSON text (stable, so re-runs write identical rows)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
