"""Quarantined rows that hold a person's identifiers (raw or normalised).

Quarantine keeps bad rows as their raw record (JSON, or the raw text line a
parser rejected), so identifiers hide inside text in whatever spelling the
source used. A portable ``LIKE`` pre-filter in the store narrows the rows to
candidates; their tokens (e-mail-shaped substrings and fields between
delimiters, :func:`profiles._person_sql.tokens_sql` style) are normalised with
the identity normalisers and compared with the person's identifiers.
"""

from __future__ import annotations

import duckdb
import pandas as pd
from cip.profiles._person_sql import DELIMS, EMAIL_LIKE, ID_KINDS
from cip.profiles.identity.normalise import normalise_identifier
from cip.profiles.identity.options import IdentityOptions
from cip.profiles.store import Store

__all__ = ["quarantine_hits", "TOKEN_SQL"]


#: DuckDB SELECT of ``record_id, tok`` over a relation ``q(record_id, raw_record)``.
TOKEN_SQL = (
    "SELECT DISTINCT record_id, tok FROM ("
    f"SELECT record_id, unnest(regexp_extract_all(raw_record, '{EMAIL_LIKE}')) AS tok FROM q "
    "UNION ALL SELECT record_id, trim(unnest(string_split_regex(raw_record, "
    f"'{DELIMS}'))) AS tok FROM q) t WHERE length(tok) BETWEEN 1 AND 320"
)


def _like(text: str) -> str:
    esc = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("'", "''")
    return f"'%{esc}%'"


def _prefilter(ids: set[tuple[str, str]], raw: pd.DataFrame) -> str:
    conds = []
    for kind, value in sorted(ids):
        if kind == "email":
            conds.append(
                f"lower(raw_record) LIKE {_like('@' + value.rsplit('@', 1)[-1])} ESCAPE '\\'"
            )
        elif kind == "phone":
            tail = "".join(ch for ch in value if ch.isdigit())[-7:]
            conds.append(f"regexp_replace(raw_record, '[^0-9]', '', 'g') LIKE '%{tail}%'")
        else:
            conds.append(f"raw_record LIKE {_like(value)} ESCAPE '\\'")
    for r in sorted(set(raw["raw"].astype(str))):
        conds.append(f"lower(raw_record) LIKE {_like(r.lower())} ESCAPE '\\'")
    return " OR ".join(conds) or "FALSE"


def quarantine_hits(
    store: Store, ids: set[tuple[str, str]], raw: pd.DataFrame, opts: IdentityOptions
) -> tuple[list[str], set[tuple[str, str]]]:
    """``record_id``\\ s of quarantine rows holding one of ``ids`` or a raw spelling in ``raw``.

    Also returns which ``(kind, value)`` of ``ids`` were seen there.
    """
    if not store.has_table("quarantine") or not (ids or len(raw)):
        return [], set()
    cands = store.arrow(
        f"SELECT record_id, CAST(raw_record AS VARCHAR) AS raw_record FROM quarantine "
        f"WHERE raw_record IS NOT NULL AND ({_prefilter(ids, raw)})"
    )
    if cands.num_rows == 0:
        return [], set()
    con = duckdb.connect()
    try:
        con.register("q", cands)
        toks = con.sql(TOKEN_SQL).df()
    finally:
        con.close()
    raw_set = {str(r).strip() for r in raw["raw"]}
    hits = set(toks.loc[toks["tok"].isin(raw_set), "record_id"].astype(str))
    seen: set[tuple[str, str]] = set()
    uniq = pd.Series(toks["tok"].drop_duplicates().to_numpy(), dtype="string")
    for kind in ID_KINDS:
        if not any(k == kind for k, _ in ids):
            continue
        cand = uniq[uniq.str.contains("@")] if kind == "email" else uniq
        if kind == "phone":
            cand = cand[cand.str.count(r"\d") >= 6]
        if cand.empty:
            continue
        norm = normalise_identifier(kind, cand, **opts.normaliser_kwargs()).fillna("")
        good = {t: v for t, v in zip(cand, norm, strict=True) if (kind, v) in ids}
        if good:
            seen |= {(kind, v) for v in good.values()}
            hits |= set(toks.loc[toks["tok"].isin(list(good)), "record_id"].astype(str))
    return sorted(hits), seen
