"""Segment listing and pages over the service's in-memory snapshot (activation's functions).

``activation.segment_sizes`` and ``activation.segment_page`` apply consent per
export purpose and erasure, and page by keyset on ``unified_id`` with a cursor
that pins the ``as_of`` snapshot; they run unchanged on the in-memory copy
(which keeps each segment's last two builds, so a cursor handed out before a
new build still pages through its snapshot).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pandas as pd
from cip.activation import segment_page as _page
from cip.activation import segment_sizes as _sizes
from cip.profiles.errors import NotFoundError
from cip.profiles.store import Store

__all__ = ["segment_sizes", "segment_page"]


def _iso(v: Any) -> str | None:
    return None if v is None or pd.isna(v) else pd.Timestamp(v).isoformat()


def segment_sizes(store: Store, as_of: str | None = None) -> list[dict[str, Any]]:
    """One dict per segment: members, entered, exited, kind, purpose, description, as_of."""
    df = _sizes(store, as_of)
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    keep = ("segment", "members", "entered", "exited", "kind", "purpose", "description")
    return [{**{k: r.get(k) for k in keep}, "as_of": _iso(r.get("as_of"))} for r in rows]


def segment_page(
    store: Store,
    segment: str,
    limit: int,
    cursor: str | None = None,
    purpose: str | None = None,
) -> tuple[str, list[dict[str, Any]], str | None]:
    """``(as_of, member rows, next_cursor)`` of one page of a segment."""
    rows, nxt = _page(store, segment, limit, cursor, None, purpose)  # type: ignore[arg-type]
    if rows:
        return str(rows[0]["as_of"]), rows, nxt
    if cursor:  # activation validated it: base64 of JSON [as_of, last unified_id]
        as_of = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[0]
        return str(as_of), rows, nxt
    df = store.sql("SELECT max(as_of) AS a FROM segment_builds WHERE segment = ?", [segment])
    if df.empty or pd.isna(df["a"].iloc[0]):
        raise NotFoundError(f"no segment named {segment!r}")
    return str(_iso(df["a"].iloc[0])), rows, nxt
