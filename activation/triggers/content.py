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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cip.activation.triggers._tables import EVENTS, HISTORY
from cip.profiles.errors import CIPError
from cip.profiles.store import Store

__all__ = [
    "ContentRequest",
    "ContentResult",
    "ContentProvider",
    "ContentUnavailable",
    "cart_items",
    "describe_items",
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


@dataclass
class ContentResult:
    """Recommended items (dicts with at least ``item_id``; ``score`` when known) and the
    versions of the models that chose them."""

    items: list[dict[str, Any]] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)


class ContentProvider(Protocol):
    def __call__(self, request: ContentRequest) -> ContentResult: ...


def cart_items(store: Store, unified_id: str, start: dt.datetime, now: dt.datetime) -> list[str]:
    """Items the person added to the cart in ``[start - CART_LOOKBACK, now]`` and neither
    removed nor bought since their last addition, most recent first."""
    df = store.sql(
        "SELECT item_id, max(CASE WHEN event_type = 'add_to_cart' THEN ts END) AS added, "
        "max(CASE WHEN event_type = 'remove_from_cart' THEN ts END) AS removed, "
        "max(CASE WHEN event_type = 'purchase' THEN ts END) AS bought "
        f"FROM {EVENTS} WHERE unified_id = ? AND item_id IS NOT NULL "
        "AND ts >= CAST(? AS TIMESTAMP) AND ts <= CAST(? AS TIMESTAMP) GROUP BY item_id",
        [unified_id, start - CART_LOOKBACK, now],
    )
    keep = df[df["added"].notna()]
    for col in ("removed", "bought"):
        keep = keep[keep[col].isna() | (keep[col] < keep["added"])]
    keep = keep.sort_values(["added", "item_id"], ascending=[False, True])
    return [str(i) for i in keep["item_id"]]


def describe_items(store: Store, items: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """``[(item_id, block), ...]`` -> dicts with title, category, price and stock from the
    open catalog version (null fields when the item has no history)."""
    ids = sorted({i for i, _ in items})
    info: dict[str, dict[str, Any]] = {}
    if ids and store.has_table(HISTORY):
        ph = ", ".join("?" for _ in ids)
        df = store.sql(
            f"SELECT item_id, title, category, price, in_stock FROM {HISTORY} "
            f"WHERE valid_to IS NULL AND item_id IN ({ph})",
            ids,
        )
        for r in df.to_dict("records"):
            info[str(r["item_id"])] = {
                "title": r["title"] if isinstance(r["title"], str) else None,
                "category": r["category"] if isinstance(r["category"], str) else None,
                "price": None
                if r["price"] is None or r["price"] != r["price"]
                else float(r["price"]),
                "in_stock": None if r["in_stock"] is None else bool(r["in_stock"]),
            }
    empty = {"title": None, "category": None, "price": None, "in_stock": None}
    return [{"item_id": i, "block": b, **info.get(i, empty)} for i, b in items]


def to_json(value: Any) -> str:
    """Compact, key-sorted JSON text (stable, so re-runs write identical rows)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
