"""Segment listing and pages over the snapshot (activation's functions when installed).

``activation.segment_sizes`` and ``activation.segment_page`` apply consent per
export purpose and erasure, and page by keyset on ``unified_id`` with a cursor
that pins the ``as_of`` snapshot. They run unchanged on the service's
in-memory copy of the store. Without the activation package a minimal
equivalent (same cursor idea, no purpose) is used.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import pandas as pd

from profiles.errors import DataError, NotFoundError
from profiles.store import Store

__all__ = ["segment_sizes", "segment_page"]

try:  # activation (issue G) provides the real implementations
    from activation import segment_page as _page
    from activation import segment_sizes as _sizes
except ImportError:  # pragma: no cover - exercised only before activation lands
    _page = None
    _sizes = None


def _iso(v: Any) -> str | None:
    return None if v is None or pd.isna(v) else pd.Timestamp(v).isoformat()


def segment_sizes(store: Store, as_of: str | None = None) -> list[dict[str, Any]]:
    """One dict per segment: members, entered, exited, kind, purpose, description, as_of."""
    if _sizes is not None:
        df = _sizes(store, as_of)
    elif not store.has_table("segment_builds"):
        df = pd.DataFrame(columns=["segment", "as_of", "members"])
    else:
        df = store.sql(
            "SELECT b.* FROM segment_builds b WHERE b.as_of = (SELECT max(l.as_of) "
            "FROM segment_builds l WHERE l.segment = b.segment) ORDER BY b.segment"
        )
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    keep = ("segment", "members", "entered", "exited", "kind", "purpose", "description")
    return [{**{k: r.get(k) for k in keep}, "as_of": _iso(r.get("as_of"))} for r in rows]


def _cursor(as_of: str, after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([as_of, after]).encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        as_of, after = json.loads(raw)
        datetime.fromisoformat(as_of)
        return str(as_of), str(after)
    except (ValueError, TypeError):
        raise DataError("invalid cursor; start again without one") from None


def segment_page(
    store: Store,
    segment: str,
    limit: int,
    cursor: str | None = None,
    purpose: str | None = None,
) -> tuple[str, list[dict[str, Any]], str | None]:
    """``(as_of, member rows, next_cursor)`` of one page of a segment."""
    if _page is not None:
        rows, nxt = _page(store, segment, limit, cursor, None, purpose)
        as_of = rows[0]["as_of"] if rows else _latest(store, segment, cursor)
        return as_of, rows, nxt
    after = None
    as_of = _latest(store, segment, None)
    if cursor:
        as_of, after = _uncursor(cursor)
    sql = (
        "SELECT unified_id, score, reasons, model_version FROM segment_members "
        "WHERE segment = ? AND as_of = CAST(? AS TIMESTAMP)"
    )
    params: list[Any] = [segment, as_of]
    if after is not None:
        sql += " AND unified_id > ?"
        params.append(after)
    if store.has_table("erased"):
        sql += " AND unified_id NOT IN (SELECT unified_id FROM erased)"
    df = store.sql(sql + f" ORDER BY unified_id LIMIT {int(limit) + 1}", params)
    more = len(df) > limit
    df = df.iloc[:limit]
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    for r in rows:
        r["reasons"] = json.loads(r["reasons"]) if r.get("reasons") else []
    return as_of, rows, (_cursor(as_of, rows[-1]["unified_id"]) if more and rows else None)


def _latest(store: Store, segment: str, cursor: str | None) -> str:
    if cursor:
        return _uncursor(cursor)[0] if _page is None else _activation_as_of(cursor)
    if not store.has_table("segment_builds"):
        raise NotFoundError("no segments have been built yet; run `cip segments build`")
    df = store.sql("SELECT max(as_of) AS a FROM segment_builds WHERE segment = ?", [segment])
    if df.empty or pd.isna(df["a"].iloc[0]):
        raise NotFoundError(f"no segment named {segment!r}")
    return str(_iso(df["a"].iloc[0]))


def _activation_as_of(cursor: str) -> str:
    as_of, _ = _uncursor(cursor)
    return as_of
