"""Read-only views of built segments: sizes, overlaps, transitions.

These return counts only (no identifiers), for the CLI, the notebook and the
service's ``/segments`` endpoint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd
from cip.activation._tables import to_timestamp
from cip.profiles.store import Store

__all__ = ["segment_sizes", "segment_overlaps", "segment_transitions", "latest_as_of"]

_SIZE_COLS = [
    "segment",
    "as_of",
    "kind",
    "purpose",
    "members",
    "entered",
    "exited",
    "previous_as_of",
    "description",
    "built_at",
]


def latest_as_of(store: Store) -> dt.datetime | None:
    """The most recent build (any segment), or None before the first build."""
    if not store.has_table("segment_builds"):
        return None
    v = store.sql("SELECT max(as_of) AS a FROM segment_builds")["a"].iloc[0]
    return None if pd.isna(v) else to_timestamp(v)


def segment_sizes(store: Store, as_of: Any = None) -> pd.DataFrame:
    """One row per segment: members, entered, exited at ``as_of``.

    With ``as_of=None`` each segment's latest build is shown. Columns:
    ``segment, as_of, kind, purpose, members, entered, exited, previous_as_of,
    description, built_at``.
    """
    if not store.has_table("segment_builds"):
        return pd.DataFrame(columns=_SIZE_COLS)
    cols = ", ".join(f"b.{c}" for c in _SIZE_COLS)
    if as_of is None:
        return store.sql(
            f"SELECT {cols} FROM segment_builds b WHERE b.as_of = (SELECT max(l.as_of) "
            "FROM segment_builds l WHERE l.segment = b.segment) ORDER BY b.segment"
        )
    return store.sql(
        f"SELECT {cols} FROM segment_builds b WHERE b.as_of = CAST(? AS TIMESTAMP) "
        "ORDER BY b.segment",
        [to_timestamp(as_of)],
    )


def _segments_filter(segments: Sequence[str] | None) -> tuple[str, list[Any]]:
    if not segments:
        return "", []
    return f" AND segment IN ({', '.join('?' for _ in segments)})", list(segments)


def segment_overlaps(
    store: Store, as_of: Any = None, segments: Sequence[str] | None = None
) -> pd.DataFrame:
    """Square matrix of shared members between segments at ``as_of`` (diagonal: sizes)."""
    ts = to_timestamp(as_of) if as_of is not None else latest_as_of(store)
    if ts is None:
        return pd.DataFrame()
    filt, fp = _segments_filter(segments)
    df = store.sql(
        "WITH m AS (SELECT segment, unified_id FROM segment_members "
        f"WHERE as_of = CAST(? AS TIMESTAMP){filt}) "
        "SELECT a.segment AS a, b.segment AS b, count(*) AS n FROM m a "
        "JOIN m b ON a.unified_id = b.unified_id GROUP BY a.segment, b.segment",
        [ts, *fp],
    )
    names = sorted(set(df["a"]) | set(segments or []))
    mat = df.pivot(index="a", columns="b", values="n").reindex(index=names, columns=names)
    mat = mat.fillna(0).astype("int64")
    mat.index.name, mat.columns.name = None, None
    return mat


def segment_transitions(
    store: Store, as_of: Any = None, segments: Sequence[str] | None = None, *, kind: str = "rfm"
) -> pd.DataFrame:
    """Moves between segments from the previous build to ``as_of``.

    Counts persons per ``(from_segment, to_segment)`` among ``segments`` (default:
    every segment of ``kind``, the mutually exclusive RFM segments); ``(none)``
    stands for not being in any of them. Meaningful for exclusive segments: a
    person in two segments is counted once per pair.
    """
    ts = to_timestamp(as_of) if as_of is not None else latest_as_of(store)
    if ts is None:
        return pd.DataFrame(columns=["from_segment", "to_segment", "n"])
    if not segments:
        segments = list(
            store.sql(
                "SELECT DISTINCT segment FROM segment_builds WHERE kind = ? "
                "AND as_of = CAST(? AS TIMESTAMP)",
                [kind, ts],
            )["segment"]
        )
    if not segments:
        return pd.DataFrame(columns=["from_segment", "to_segment", "n"])
    filt, fp = _segments_filter(segments)
    prev = store.sql(
        f"SELECT max(as_of) AS p FROM segment_builds WHERE as_of < CAST(? AS TIMESTAMP){filt}",
        [ts, *fp],
    )["p"].iloc[0]
    if pd.isna(prev):
        return pd.DataFrame(columns=["from_segment", "to_segment", "n"])
    return store.sql(
        f"WITH cur AS (SELECT segment, unified_id FROM segment_members "
        f"WHERE as_of = CAST(? AS TIMESTAMP){filt}), "
        f"prv AS (SELECT segment, unified_id FROM segment_members "
        f"WHERE as_of = CAST(? AS TIMESTAMP){filt}) "
        "SELECT COALESCE(prv.segment, '(none)') AS from_segment, "
        "COALESCE(cur.segment, '(none)') AS to_segment, count(*) AS n "
        "FROM prv FULL OUTER JOIN cur ON prv.unified_id = cur.unified_id "
        "GROUP BY 1, 2 ORDER BY n DESC, 1, 2",
        [ts, *fp, to_timestamp(prev), *fp],
    )
