"""Operator tools: forbid or allow links, look a person up, status counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from cip.profiles.errors import NotFoundError
from cip.profiles.identity._links import FORBIDDEN
from cip.profiles.identity.normalise import normalise_identifier
from cip.profiles.identity.options import IdentityOptions, parse_identifier
from cip.profiles.store import Store

__all__ = [
    "forbid_link",
    "allow_link",
    "forbidden_links",
    "person_report",
    "identity_status",
    "identity_history",
]


def identity_history(
    store: Store,
    unified_id: str | None = None,
    *,
    newest_first: bool = True,
    limit: int | None = None,
) -> pd.DataFrame:
    """Merges and splits (of one person, or all), in the order the runs finished.

    Rows of one run share its second-resolution ``ts``; two runs within one second
    are ordered by their real finish time (``_identity_runs``).
    """
    d = "DESC" if newest_first else "ASC"
    runs = store.has_table("_identity_runs")
    sql = "SELECT h.* FROM identity_history h" + (
        " LEFT JOIN (SELECT run_id, max(finished_at) AS fin FROM _identity_runs GROUP BY run_id)"
        " r ON r.run_id = h.run_id"
        if runs
        else ""
    )
    params: list = []
    if unified_id is not None:
        sql += " WHERE h.unified_id = ? OR h.other_id = ?"
        params += [unified_id, unified_id]
    sql += f" ORDER BY h.ts {d}" + (f", r.fin {d}" if runs else "")
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return store.sql(sql, params)


def _canonical(text: str, opts: IdentityOptions) -> str:
    """``TYPE:VALUE`` with the value normalised (raises on an invalid value)."""
    id_type, value = parse_identifier(text)
    norm = normalise_identifier(id_type, pd.Series([value]), **opts.normaliser_kwargs()).iloc[0]
    if pd.isna(norm):
        from cip.profiles.errors import DataError

        raise DataError(f"{text!r} is not a valid {id_type}; nothing to forbid")
    return f"{id_type}:{norm}"


def forbid_link(
    store: Store,
    a: str,
    b: str | None = None,
    *,
    reason: str | None = None,
    options: IdentityOptions | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record that ``a`` and ``b`` (``TYPE:VALUE``) must not be one person.

    Without ``b``, identifier ``a`` is never used for linking. The next
    :func:`unify` separates the persons (a minimum cut between the two
    identifiers) and records the split in ``identity_history``.
    """
    opts = options or IdentityOptions()
    row = {
        "a": _canonical(a, opts),
        "b": _canonical(b, opts) if b else None,
        "reason": reason,
        "created_at": pd.Timestamp(now or datetime.now(UTC).replace(tzinfo=None)),
    }
    df = pd.DataFrame([row]).astype({"a": "string", "b": "string", "reason": "string"})
    with store.transaction():
        if store.has_table(FORBIDDEN):
            dup = store.sql(
                f"SELECT count(*) AS n FROM {FORBIDDEN} WHERE a = ? AND "
                + ("b = ?" if row["b"] else "b IS NULL"),
                [row["a"], row["b"]] if row["b"] else [row["a"]],
            )["n"].iloc[0]
            if not dup:
                store.load_arrow(FORBIDDEN, df, mode="append")
        else:
            store.load_arrow(FORBIDDEN, df, mode="create")
    return {k: (str(v) if v is not None else None) for k, v in row.items()}


def allow_link(
    store: Store, a: str, b: str | None = None, *, options: IdentityOptions | None = None
) -> int:
    """Remove a forbidden link recorded by :func:`forbid_link`; returns rows removed."""
    opts = options or IdentityOptions()
    ca, cb = _canonical(a, opts), (_canonical(b, opts) if b else None)
    if not store.has_table(FORBIDDEN):
        raise NotFoundError("no forbidden links are recorded")
    where = "a = ? AND b = ?" if cb else "a = ? AND b IS NULL"
    params = [ca, cb] if cb else [ca]
    n = int(store.sql(f"SELECT count(*) AS n FROM {FORBIDDEN} WHERE {where}", params)["n"].iloc[0])
    if not n:
        raise NotFoundError(f"no forbidden link {ca}" + (f" ~ {cb}" if cb else ""))
    with store.transaction():
        store.execute(f"DELETE FROM {FORBIDDEN} WHERE {where}", params)
    return n


def forbidden_links(store: Store) -> pd.DataFrame:
    """The links forbidden in the store (``a, b, reason, created_at``)."""
    if not store.has_table(FORBIDDEN):
        return pd.DataFrame(columns=["a", "b", "reason", "created_at"])
    return store.sql(f"SELECT a, b, reason, created_at FROM {FORBIDDEN} ORDER BY created_at")


def person_report(
    store: Store,
    *,
    unified_id: str | None = None,
    identifier: str | None = None,
    options: IdentityOptions | None = None,
) -> dict[str, Any]:
    """Everything about one person: profile, identifiers, history (by id or ``TYPE:VALUE``)."""
    if not store.has_table("identity_map"):
        raise NotFoundError("no identity tables yet; run `cip unify` first")
    if identifier:
        id_type, value = _canonical(identifier, options or IdentityOptions()).split(":", 1)
        hit = store.sql(
            "SELECT unified_id, status FROM identity_map "
            "WHERE identifier_type = ? AND identifier_value = ?",
            [id_type, value],
        )
        if hit.empty:
            raise NotFoundError(f"identifier {identifier!r} is not known")
        if pd.isna(hit["unified_id"].iloc[0]):
            raise NotFoundError(
                f"identifier {identifier!r} is {hit['status'].iloc[0]}: it links nobody"
            )
        unified_id = str(hit["unified_id"].iloc[0])
    if not unified_id:
        raise NotFoundError("give a unified id or an identifier")
    prof = store.sql("SELECT * FROM profiles WHERE unified_id = ?", [unified_id])
    hist = (
        identity_history(store, unified_id, newest_first=False)
        if store.has_table("identity_history")
        else pd.DataFrame()
    )
    if prof.empty and hist.empty:
        raise NotFoundError(f"unified id {unified_id!r} is not known")
    ids = store.sql(
        "SELECT identifier_type, identifier_value, first_seen, last_seen, record_count "
        "FROM identity_map WHERE unified_id = ? ORDER BY identifier_type, identifier_value",
        [unified_id],
    )
    return {
        "unified_id": unified_id,
        "active": not prof.empty,
        "profile": _jsonable(prof.iloc[0].to_dict()) if not prof.empty else None,
        "identifiers": [_jsonable(r) for r in ids.to_dict("records")],
        "history": [_jsonable(r) for r in hist.to_dict("records")],
    }


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if hasattr(v, "tolist"):
            v = v.tolist()
        if isinstance(v, float) and pd.isna(v) or v is pd.NaT or v is pd.NA:
            v = None
        out[k] = v
    return out


def identity_status(store: Store) -> dict[str, Any] | None:
    """Persons, merges, splits, blocked identifiers and the last run (None before any run)."""
    if not store.has_table("_identity_runs"):
        return None
    last = store.sql("SELECT * FROM _identity_runs ORDER BY finished_at DESC LIMIT 1")
    hist = (
        store.sql("SELECT kind, count(*) AS n FROM identity_history GROUP BY kind")
        if store.has_table("identity_history")
        else pd.DataFrame(columns=["kind", "n"])
    )
    counts = dict(zip(hist["kind"], hist["n"].astype(int), strict=True))
    blocked = store.count("identity_blocked") if store.has_table("identity_blocked") else 0
    run = _jsonable(last.iloc[0].to_dict()) if not last.empty else {}
    return {
        "persons": store.count("profiles") if store.has_table("profiles") else 0,
        "records_mapped": store.count("record_map") if store.has_table("record_map") else 0,
        "merges": counts.get("merge", 0),
        "splits": counts.get("split", 0),
        "blocked_identifiers": blocked,
        "forbidden_links": store.count(FORBIDDEN) if store.has_table(FORBIDDEN) else 0,
        "last_run": {
            k: run.get(k) for k in ("run_id", "mode", "finished_at", "seconds", "records_new")
        },
    }
