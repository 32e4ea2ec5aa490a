"""Probabilistic record linkage with Splink (Fellegi-Sunter model, DuckDB backend).

Each declared field gets a Splink comparison chosen by its *kind*; the model is
trained without labels: ``u`` probabilities by random sampling of record pairs,
``m`` probabilities by expectation maximisation (Fellegi & Sunter 1969; EM as
in Winkler 1988), the prior match rate from strict deterministic rules. Pairs
from the blocking rules are scored and kept above a match-probability
threshold; persons are the connected components of the kept pairs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from itertools import combinations

import duckdb
import numpy as np
import pandas as pd
from cip.profiles.errors import ConfigError, DataError
from cip.profiles.identity._graph import components
from cip.profiles.identity.options import FUZZY_KINDS

__all__ = ["fuzzy_pairs", "resolve_identities", "prepare_fields"]

log = logging.getLogger(__name__)

#: Kinds ordered by how selective an exact agreement is (used to pick training rules).
_SELECTIVE = ("email", "phone", "date", "postcode", "exact", "name", "text")


def prepare_fields(df: pd.DataFrame, fields: Mapping[str, str]) -> pd.DataFrame:
    """Clean each field for its kind; returns columns ``f0..fk`` (empty -> None)."""
    out = {}
    for i, (col, kind) in enumerate(fields.items()):
        s = df[col]
        if kind == "date":
            if not pd.api.types.is_datetime64_any_dtype(s):
                s = pd.to_datetime(s.astype("string"), errors="coerce", format="mixed")
            s = s.dt.strftime("%Y-%m-%d")
        else:
            s = s.astype("string").str.strip()
            if kind in ("name", "text", "email"):
                s = s.str.lower().str.replace(r"\s+", " ", regex=True)
            elif kind == "postcode":
                s = s.str.upper().str.replace(r"\s+", " ", regex=True)
            elif kind == "phone":
                s = s.str.replace(r"\D", "", regex=True)
        s = s.astype("string")
        out[f"f{i}"] = s.where(s.str.len() > 0).astype(object).where(lambda x: x.notna(), None)
    return pd.DataFrame(out, index=df.index)


def _comparison(col: str, kind: str):
    import splink.comparison_library as cl

    if kind == "name":
        return cl.NameComparison(col)
    if kind == "date":
        return cl.DateOfBirthComparison(col, input_is_string=True)
    if kind == "text":
        return cl.JaroWinklerAtThresholds(col, [0.95, 0.88]).configure(
            term_frequency_adjustments=True
        )
    if kind == "postcode":
        return cl.PostcodeComparison(col)
    if kind == "email":
        return cl.EmailComparison(col)
    if kind == "phone":
        return cl.LevenshteinAtThresholds(col, [1, 2])
    return cl.ExactMatch(col).configure(term_frequency_adjustments=True)


def _pair_count(df: pd.DataFrame, cols: Sequence[str]) -> float:
    sizes = df.dropna(subset=list(cols)).groupby(list(cols)).size().to_numpy(np.float64)
    return float((sizes * (sizes - 1) / 2).sum())


def _blocking_rules(df: pd.DataFrame, cols: list[str], max_pairs: float) -> list[tuple[str, ...]]:
    """One exact-agreement rule per field; a field whose blocks are too big is paired up."""
    rules: list[tuple[str, ...]] = []
    for c in cols:
        if _pair_count(df, [c]) <= max_pairs:
            rules.append((c,))
        else:
            rules += [(c, d) for d in cols if d != c and _pair_count(df, [c, d]) <= max_pairs]
    return rules or [tuple(cols)]


def fuzzy_pairs(
    df: pd.DataFrame,
    fields: Mapping[str, str],
    *,
    threshold: float = 0.9,
    seed: int = 42,
    max_pairs_u: float = 1e6,
    max_block_pairs: float = 2e7,
) -> pd.DataFrame:
    """Scored record pairs above ``threshold``: ``left, right, match_probability``.

    ``df`` holds the fields named in ``fields`` (``{column: kind}``); ``left`` and
    ``right`` are row positions of ``df``.
    """
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    bad = {c: k for c, k in fields.items() if k not in FUZZY_KINDS}
    if bad:
        raise ConfigError(f"unknown fuzzy kinds {bad}; expected one of {', '.join(FUZZY_KINDS)}")
    empty = pd.DataFrame({"left": [], "right": [], "match_probability": []})
    if len(df) < 2 or not fields:
        return empty
    data = prepare_fields(df, fields)
    cols = list(data.columns)
    kinds = dict(zip(cols, fields.values(), strict=True))
    data.insert(0, "unique_id", np.arange(len(data), dtype=np.int64))
    by_selectivity = sorted(cols, key=lambda c: _SELECTIVE.index(kinds[c]))
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[_comparison(c, kinds[c]) for c in cols],
        blocking_rules_to_generate_predictions=[
            block_on(*r) for r in _blocking_rules(data, cols, max_block_pairs)
        ],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    strict = [c for c in cols if kinds[c] in ("name", "date")]
    unique = [c for c in cols if kinds[c] in ("email", "phone")]
    # strict rules (two names/dates agree exactly, or a unique contact) for the prior
    deterministic = [block_on(a, b) for a, b in combinations(strict, 2)]
    deterministic += [block_on(c) for c in unique] or ([] if deterministic else [block_on(*cols)])
    con = duckdb.connect()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            linker = Linker(DuckDBAPI(con).register(data), settings, log_level=logging.ERROR)
            try:
                linker.training.estimate_probability_two_random_records_match(
                    deterministic, recall=0.7
                )
            except (ValueError, ZeroDivisionError):  # no deterministic match at all
                log.info("no exact agreements to estimate the prior from; using the default")
            linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=seed)
            if len(cols) >= 2:
                for c in by_selectivity[:2]:
                    linker.training.estimate_parameters_using_expectation_maximisation(block_on(c))
            pred = linker.inference.predict(
                threshold_match_probability=threshold, warning_mode="never"
            ).as_pandas_dataframe()
    finally:
        con.close()
    if pred.empty:
        return empty
    return pd.DataFrame(
        {
            "left": pred["unique_id_l"].to_numpy(np.int64),
            "right": pred["unique_id_r"].to_numpy(np.int64),
            "match_probability": pred["match_probability"].to_numpy(np.float64),
        }
    )


def _md5_ids(keys: pd.Series) -> pd.Series:
    """``u_`` + first 16 hex chars of md5 of each key (vectorised in DuckDB)."""
    frame = pd.DataFrame({"k": keys.astype("string").to_numpy()})
    con = duckdb.connect()
    try:
        con.register("keys", frame)
        got = con.execute("SELECT 'u_' || substr(md5(k), 1, 16) AS u FROM keys").df()["u"]
    finally:
        con.close()
    return pd.Series(got.to_numpy(), index=keys.index, dtype="string")


def resolve_identities(
    records: pd.DataFrame,
    *,
    id_column: str,
    exact: Sequence[str] = (),
    fuzzy: Mapping[str, str] | None = None,
    threshold: float = 0.9,
    random_state: int = 42,
    max_pairs_u: float = 1e6,
) -> pd.DataFrame:
    """Resolve the person behind each record of any DataFrame.

    Records sharing a value of any ``exact`` column are the same person
    (deterministic); ``fuzzy`` declares fields for probabilistic matching with
    their kind (``name``, ``date``, ``text``, ``postcode``, ``email``, ``phone``,
    ``exact``), scored by an unsupervised Splink model; pairs with a match
    probability of at least ``threshold`` are linked. Persons are the connected
    components of all links.

    Returns one row per input record, in input order: ``id_column``,
    ``unified_id`` (``u_`` + 16 hex chars, derived from the smallest id of the
    person) and ``match_probability`` (the strongest link of the record into its
    person: 1.0 for an exact link, NaN for a record alone).
    """
    fuzzy = dict(fuzzy or {})
    missing = [c for c in [id_column, *exact, *fuzzy] if c not in records.columns]
    if missing:
        raise DataError(f"resolve_identities: columns not in the records: {missing}")
    if records[id_column].isna().any() or records[id_column].duplicated().any():
        raise DataError(f"resolve_identities: id column {id_column!r} must be unique and non-null")
    if not exact and not fuzzy:
        raise ConfigError("resolve_identities: give at least one exact or fuzzy column")
    n = len(records)
    a, b, p = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    pos = np.arange(n, dtype=np.int64)
    for col in exact:
        v = records[col].astype("string").str.strip()
        v = v.where(v.str.len() > 0)
        ok = v.notna().to_numpy()
        first = pd.Series(pos[ok]).groupby(v[ok].to_numpy()).transform("first").to_numpy()
        a.append(pos[ok])
        b.append(first)
        p.append(np.ones(ok.sum()))
    if fuzzy:
        pairs = fuzzy_pairs(
            records.reset_index(drop=True),
            fuzzy,
            threshold=threshold,
            seed=random_state,
            max_pairs_u=max_pairs_u,
        )
        a.append(pairs["left"].to_numpy())
        b.append(pairs["right"].to_numpy())
        p.append(pairs["match_probability"].to_numpy())
    ea, eb, ep = np.concatenate(a), np.concatenate(b), np.concatenate(p)
    real = ea != eb
    ea, eb, ep = ea[real], eb[real], ep[real]
    labels = components(n, ea, eb)
    best = np.full(n, np.nan)
    np.fmax.at(best, ea, ep)
    np.fmax.at(best, eb, ep)
    keys = (
        pd.Series(records[id_column].astype("string").to_numpy()).groupby(labels).transform("min")
    )
    return pd.DataFrame(
        {
            id_column: records[id_column].to_numpy(),
            "unified_id": _md5_ids(keys).to_numpy(),
            "match_probability": best,
        }
    )
