"""Compile segment definitions to SQL with bound parameters.

Field names are resolved against the real columns of the input tables
(feature table first, then ``scores``, then ``profiles``) and quoted as
identifiers only after that check; every value from a definition is a bound
``?`` parameter cast to the column's type. Nothing a user wrote is evaluated.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from cip.activation._tables import json_list, sql_type
from cip.activation.definitions import Condition, SegmentDefinition
from cip.profiles.errors import ConfigError, DataError, NotFoundError
from cip.profiles.sql import quote_ident
from cip.profiles.store import Store

__all__ = [
    "Inputs",
    "discover",
    "SegmentSql",
    "compile_segment",
    "base_select",
    "threshold_tables",
    "Missing",
    "Thresholds",
]

#: (field, ASC|DESC, percentage) -> name of the one-row table holding the boundary value
Thresholds = dict[tuple[str, str, float], str]

#: The CLV champion's columns of ``scores`` (null where no CLV champion scored).
CLV_FIELDS = frozenset(
    {"clv", "expected_orders", "p_alive", "next_order_date", "clv_model_version"}
)
#: Columns the ``scores`` table is known to have (for a clear message when it is absent).
SCORE_FIELDS = (
    frozenset({"churn_probability", "purchase_probability", "model", "model_version"}) | CLV_FIELDS
)
#: ``uplift_<campaign>`` (predicted uplift) and ``sleeping_dog_<campaign>`` (negative-uplift
#: flag) read the latest ``uplift_scores`` of the campaign at or before the build's as_of.
UPLIFT_FIELD = re.compile(r"^(uplift|sleeping_dog)_([A-Za-z0-9_]+)$")
#: Profile columns that a condition may read only once ``profiles`` exists.
PROFILE_FIELDS = frozenset({"first_seen", "last_seen", "known", "country", "city", "record_count"})
#: Personal data and keys: never usable in a condition or as a score.
FORBIDDEN_FIELDS = frozenset(
    {
        "unified_id",
        "as_of",
        "reasons",
        "customer_id",
        "email",
        "phone",
        "loyalty_id",
        "anonymous_id",
        "customer_ids",
        "emails",
        "phones",
        "loyalty_ids",
        "anonymous_ids",
        "first_name",
        "last_name",
        "address",
        "postcode",
        "date_of_birth",
    }
)


_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Missing(Exception):
    """A definition needs an input that is not there yet (scores, profiles)."""


def _columns(store: Store, table: str) -> dict[str, str]:
    schema = store.schema if store.dialect == "postgres" else "main"  # type: ignore[attr-defined]
    df = store.sql(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = ? ORDER BY ordinal_position",
        [table, schema],
    )
    return dict(zip(df["column_name"], df["data_type"], strict=True))


@dataclass
class Inputs:
    """What the store holds for one build: tables, their columns and types."""

    dialect: str
    features: str
    feature_cols: dict[str, str]
    score_cols: dict[str, str] | None  # None: no scores at this as_of
    profile_cols: dict[str, str] | None  # None: no profiles table
    has_record_map: bool
    has_erased: bool
    notes: list[str] = field(default_factory=list)
    has_clv: bool = False  # some score at this as_of has CLV outputs
    #: ``uplift_<c>`` / ``sleeping_dog_<c>`` -> (campaign, column, as_of of its scores)
    uplift: dict[str, tuple[str, str, dt.datetime]] = field(default_factory=dict)

    def resolve(self, name: str, segment: str) -> tuple[str, str]:
        """``(alias, sql_type)`` of a field: ``f`` features, ``s`` scores, ``p`` profiles."""
        if name in FORBIDDEN_FIELDS:
            raise ConfigError(
                f"segment {segment!r}: field {name!r} is a key or personal data and cannot be "
                "used in a condition or as a score"
            )
        if name in CLV_FIELDS and name not in self.feature_cols and not self.has_clv:
            if self.score_cols is None:
                raise Missing(f"needs scores at this as_of ({name}); run `cip score` first")
            raise Missing(
                f"needs CLV scores at this as_of ({name}); run `cip train clv`, then `cip score`"
            )
        for alias, cols in (
            ("f", self.feature_cols),
            ("s", self.score_cols),
            ("p", self.profile_cols),
        ):
            if cols and name in cols:
                return alias, sql_type(cols[name], self.dialect)
        if name in self.uplift:
            kind = self.uplift[name][1]
            return "u", sql_type("DOUBLE" if kind == "uplift" else "BOOLEAN", self.dialect)
        m = UPLIFT_FIELD.match(name)
        if m:
            have = ", ".join(sorted({c for c, _, _ in self.uplift.values()})) or "none"
            raise Missing(
                f"needs uplift scores of campaign {m.group(2)!r} at or before this as_of "
                f"({name}; scored campaigns: {have}); run `cip train uplift --campaign "
                f"{m.group(2)}` first"
            )
        if self.score_cols is None and name in SCORE_FIELDS:
            raise Missing(f"needs scores at this as_of ({name}); run `cip score` first")
        if self.profile_cols is None and name in PROFILE_FIELDS:
            raise Missing(f"needs profiles ({name}); run `cip unify` first")
        known = sorted(
            set(self.feature_cols) | set(self.score_cols or ()) | set(self.profile_cols or ())
        )
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        tables = [self.features] + (["scores"] if self.score_cols is not None else [])
        tables += ["profiles"] if self.profile_cols is not None else []
        raise ConfigError(
            f"segment {segment!r}: unknown feature {name!r} (not a column of "
            f"{', '.join(tables)}){hint}"
        )


def discover(store: Store, features_table: str, as_of: dt.datetime) -> Inputs:
    """Inspect the store for a build at ``as_of``; errors when features are missing."""
    if not _TABLE.match(features_table):
        raise ConfigError(f"invalid feature table name {features_table!r}")
    if not store.has_table(features_table):
        raise NotFoundError(
            f"table {features_table!r} does not exist; run `cip features --as-of ...` first"
        )
    fcols = _columns(store, features_table)
    for need in ("unified_id", "as_of"):
        if need not in fcols:
            raise DataError(f"table {features_table!r} has no column {need!r}")
    n = store.sql(
        f"SELECT count(*) AS n FROM {quote_ident(features_table)} WHERE as_of = CAST(? AS TIMESTAMP)",
        [as_of],
    )["n"].iloc[0]
    if not n:
        have = store.sql(
            f"SELECT DISTINCT as_of FROM {quote_ident(features_table)} ORDER BY as_of DESC LIMIT 5"
        )["as_of"]
        listed = ", ".join(str(pd.Timestamp(x)) for x in have) or "none"
        raise DataError(
            f"no rows in {features_table!r} at as_of {as_of}; latest snapshots: {listed}"
        )
    inputs = Inputs(
        dialect=store.dialect,
        features=features_table,
        feature_cols=fcols,
        score_cols=None,
        profile_cols=_columns(store, "profiles") if store.has_table("profiles") else None,
        has_record_map=store.has_table("record_map"),
        has_erased=store.has_table("erased"),
    )
    if store.has_table("scores"):
        s = store.sql(
            "SELECT count(*) AS n, count(DISTINCT unified_id) AS u FROM scores "
            "WHERE as_of = CAST(? AS TIMESTAMP)",
            [as_of],
        ).iloc[0]
        if s["n"] != s["u"]:
            raise DataError(f"scores has several rows per profile at as_of {as_of}")
        if s["n"]:
            inputs.score_cols = _columns(store, "scores")
            if "clv" in inputs.score_cols:
                inputs.has_clv = bool(
                    store.sql(
                        "SELECT count(clv) AS n FROM scores WHERE as_of = CAST(? AS TIMESTAMP)",
                        [as_of],
                    )["n"].iloc[0]
                )
        else:
            inputs.notes.append(f"no scores at as_of {as_of}")
    else:
        inputs.notes.append("no scores table")
    if inputs.profile_cols is None:
        inputs.notes.append("no profiles table (identity not run): unified_id = customer_id")
    if store.has_table("uplift_scores"):
        latest = store.sql(
            "SELECT campaign, max(as_of) AS as_of FROM uplift_scores "
            "WHERE as_of <= CAST(? AS TIMESTAMP) GROUP BY campaign",
            [as_of],
        )
        for campaign, at in zip(latest["campaign"], latest["as_of"], strict=True):
            key = re.sub(r"[^A-Za-z0-9_]+", "_", str(campaign)).strip("_")
            when = pd.Timestamp(at).to_pydatetime()
            inputs.uplift[f"uplift_{key}"] = (str(campaign), "uplift", when)
            inputs.uplift[f"sleeping_dog_{key}"] = (str(campaign), "sleeping_dog", when)
    return inputs


@dataclass
class _Frag:
    sql: str
    params: list[Any]


def _value(v: Any, t: str, segment: str, name: str) -> Any:
    try:
        if t in ("DOUBLE", "DOUBLE PRECISION"):
            if isinstance(v, bool):
                raise ValueError
            return float(v)
        if t == "BOOLEAN":
            if not isinstance(v, bool):
                raise ValueError
            return v
        if t in ("TIMESTAMP", "DATE"):
            return pd.Timestamp(v).to_pydatetime()
    except (ValueError, TypeError):
        raise ConfigError(
            f"segment {segment!r}: value {v!r} does not fit field {name!r} of type {t}"
        ) from None
    return str(v)


class _Compiler:
    """Compiles one definition's conditions; collects the percentile thresholds it needs."""

    def __init__(self, inputs: Inputs, segment: str, thresholds: Thresholds) -> None:
        self.inputs, self.segment, self.thresholds = inputs, segment, thresholds

    def cond(self, c: Condition) -> _Frag:
        if c.all is not None or c.any is not None:
            parts = [self.cond(x) for x in (c.all or c.any or [])]
            word = " AND " if c.all is not None else " OR "
            return _Frag(
                "(" + word.join(p.sql for p in parts) + ")", [v for p in parts for v in p.params]
            )
        assert c.field and c.op
        _alias, t = self.inputs.resolve(c.field, self.segment)
        col = f"b.{quote_ident(c.field)}"
        if c.op in ("is_null", "not_null"):
            return _Frag(f"({col} IS {'NOT ' if c.op == 'not_null' else ''}NULL)", [])
        if c.op in ("top_pct", "bottom_pct"):
            if t not in ("DOUBLE", "DOUBLE PRECISION", "TIMESTAMP", "DATE"):
                raise ConfigError(
                    f"segment {self.segment!r}: {c.op} needs a numeric or time field, "
                    f"{c.field!r} is {t}"
                )
            top = c.op == "top_pct"
            key = (c.field, "DESC" if top else "ASC", float(c.value))  # type: ignore[arg-type]
            tbl = self.thresholds.setdefault(key, f"_seg_thr{len(self.thresholds)}")
            return _Frag(f"({col} {'>=' if top else '<='} (SELECT v FROM {tbl}))", [])
        if c.op == "within_days":
            if t not in ("TIMESTAMP", "DATE"):
                raise ConfigError(
                    f"segment {self.segment!r}: within_days needs a date or time field, "
                    f"{c.field!r} is {t}"
                )
            shifted = "b.as_of + CAST(? AS INTEGER) * INTERVAL '1 day'"
            lo, hi = ("b.as_of", shifted) if c.value > 0 else (shifted, "b.as_of")  # type: ignore[operator]
            return _Frag(f"({col} >= {lo} AND {col} < {hi})", [int(c.value)])  # type: ignore[arg-type]
        if c.op in ("in", "not_in"):
            vals = [_value(v, t, self.segment, c.field) for v in c.value]  # type: ignore[union-attr]
            ph = ", ".join(f"CAST(? AS {t})" for _ in vals)
            neg = "NOT " if c.op == "not_in" else ""
            return _Frag(f"({col} IS NOT NULL AND {col} {neg}IN ({ph}))", vals)
        op = {"==": "=", "!=": "<>"}.get(c.op, c.op)
        return _Frag(f"({col} {op} CAST(? AS {t}))", [_value(c.value, t, self.segment, c.field)])

    def reasons(self, c: Condition, guarded: bool) -> list[tuple[_Frag, _Frag | None]]:
        """(text, guard) pairs: a condition under an ``any`` is listed only when true."""
        if c.all is not None or c.any is not None:
            sub_guard = guarded or c.any is not None
            return [r for x in (c.all or c.any or []) for r in self.reasons(x, sub_guard)]
        return [(_Frag("CAST(? AS VARCHAR)", [c.describe()]), self.cond(c) if guarded else None)]


@dataclass
class SegmentSql:
    """What a build runs for one segment."""

    definition: SegmentDefinition
    where: _Frag
    score: str  # SQL expression over b. (base) and e. (events)
    reasons: _Frag
    model_version: str
    uses_scores: bool


def compile_segment(
    d: SegmentDefinition,
    inputs: Inputs,
    thresholds: Thresholds,
    event_reason: _Frag | None,
) -> SegmentSql:
    """Compile one definition (raises :class:`Missing` or ``ConfigError``)."""
    comp = _Compiler(inputs, d.name, thresholds)
    aliases = {f: inputs.resolve(f, d.name)[0] for f in d.fields()}
    where: list[_Frag] = []
    texts: list[tuple[_Frag, _Frag | None]] = []
    if d.kind == "rfm":
        names = d.rfm_segments or []
        where.append(
            _Frag(
                f"b.rfm_segment IN ({', '.join('CAST(? AS VARCHAR)' for _ in names)})", list(names)
            )
        )
        texts.append((_Frag("'RFM segment ' || b.rfm_segment", []), None))
    if d.conditions:
        parts = [comp.cond(c) for c in d.conditions]
        word = " AND " if d.match == "all" else " OR "
        where.append(
            _Frag("(" + word.join(p.sql for p in parts) + ")", [v for p in parts for v in p.params])
        )
        for c in d.conditions:
            texts += comp.reasons(c, guarded=d.match == "any")
    if event_reason is not None:
        texts.append((event_reason, None))
    uses_scores = "s" in aliases.values()
    items, params = [], []
    for text, guard in texts:
        items.append((text.sql, guard.sql if guard else None))
        params += (guard.params if guard else []) + text.params
    extra = "b._model_reasons" if uses_scores else None
    reasons = _Frag(json_list(inputs.dialect, items, extra), params)
    if d.score:
        score = f"CAST(b.{quote_ident(d.score)} AS DOUBLE PRECISION)"
    elif d.events is not None:
        score = "CAST(e.n AS DOUBLE PRECISION)"
    else:
        score = "CAST(NULL AS DOUBLE PRECISION)"
    where_sql = " AND ".join(w.sql for w in where) or "TRUE"
    return SegmentSql(
        definition=d,
        where=_Frag(where_sql, [v for w in where for v in w.params]),
        score=score,
        reasons=reasons,
        model_version="b._model_version" if uses_scores else "CAST(NULL AS VARCHAR)",
        uses_scores=uses_scores,
    )


def base_select(inputs: Inputs, fields: set[str], erased_pred: str) -> str:
    """The ``SELECT`` of the per-build base table (one row per profile of the snapshot).

    Takes one parameter: the as_of.
    """
    cols = ["f.unified_id", "f.as_of"]
    for name in sorted(fields):
        alias, _t = inputs.resolve(name, "?")
        if alias != "u":  # uplift columns come from their campaign's join below
            cols.append(f"{alias}.{quote_ident(name)} AS {quote_ident(name)}")
    joins = ""
    if inputs.score_cols is not None:
        joins += " LEFT JOIN scores s ON s.unified_id = f.unified_id AND s.as_of = f.as_of"
        mv = "s.model_version" if "model_version" in inputs.score_cols else "CAST(NULL AS VARCHAR)"
        rs = "s.reasons" if "reasons" in inputs.score_cols else "CAST(NULL AS VARCHAR)"
        cols += [
            f"CAST({mv} AS VARCHAR) AS _model_version",
            f"CAST({rs} AS VARCHAR) AS _model_reasons",
        ]
    if inputs.profile_cols is not None and any(inputs.resolve(n, "?")[0] == "p" for n in fields):
        joins += " LEFT JOIN profiles p ON p.unified_id = f.unified_id"
    joined: dict[tuple[str, dt.datetime], str] = {}
    for name in sorted(n for n in fields if inputs.resolve(n, "?")[0] == "u"):
        campaign, column, at = inputs.uplift[name]
        alias = joined.get((campaign, at))
        if alias is None:
            alias = joined[(campaign, at)] = f"u{len(joined)}"
            lit = "'" + campaign.replace("'", "''") + "'"  # a stored campaign name, quoted
            joins += (
                f" LEFT JOIN (SELECT unified_id, uplift, sleeping_dog FROM uplift_scores "
                f"WHERE campaign = {lit} AND as_of = CAST('{at.isoformat(sep=' ')}' AS TIMESTAMP))"
                f" {alias} ON {alias}.unified_id = f.unified_id"
            )
        cols.append(f"{alias}.{column} AS {quote_ident(name)}")
    return (
        f"SELECT {', '.join(cols)} FROM {quote_ident(inputs.features)} f{joins} "
        f"WHERE f.as_of = CAST(? AS TIMESTAMP) AND {erased_pred}"
    )


def threshold_tables(store: Store, thresholds: Thresholds) -> None:
    """Create one-row tables ``_seg_thrN(v)``: the boundary value of each percentile condition.

    The top ``p`` % of the ``n`` non-null values of the base table are the values
    ``>=`` the ``k``-th largest, ``k = ceil(p * n / 100)``; equivalently a row is
    in when fewer than ``p * n / 100`` rows have a strictly greater value, so
    ties at the boundary are all in. ``bottom_pct`` mirrors it. No value: no row,
    and the comparison with the empty subquery (NULL) keeps nobody.
    """
    for (name, direction, pct), tbl in thresholds.items():
        n = int(store.sql(f"SELECT count({quote_ident(name)}) AS n FROM _seg_base")["n"].iloc[0])
        k = max(math.ceil(pct * n / 100.0), 1)
        store.execute(f"DROP TABLE IF EXISTS {tbl}")
        store.execute(
            f"CREATE TEMP TABLE {tbl} AS SELECT {quote_ident(name)} AS v FROM _seg_base "
            f"WHERE {quote_ident(name)} IS NOT NULL ORDER BY {quote_ident(name)} {direction} LIMIT 1 OFFSET {k - 1}"
        )
