"""Probabilistic matching: ``resolve_identities`` on DataFrames, Splink links in ``unify``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cip.profiles.errors import ConfigError, DataError
from cip.profiles.identity import (
    FuzzyOptions,
    IdentityOptions,
    pairwise_scores,
    resolve_identities,
    unify,
)
from cip.profiles.store import open_store

FIELDS = {"first_name": "name", "surname": "name", "dob": "date", "city": "text", "email": "email"}
PEOPLE = [
    ("Ann", "Lee", "1980-01-02", "Leeds", "ann.lee@x.com"),
    ("Bob", "Smith", "1975-05-06", "York", "bob@y.org"),
    ("Carla", "Jones", "1990-09-09", "Hull", "carla.j@z.net"),
    ("David", "Brown", "1966-03-14", "Bath", "dbrown@w.com"),
    ("Emma", "Wilson", "1988-12-01", "Leeds", "emma.w@x.com"),
    ("Frank", "Taylor", "1972-07-07", "York", "ft@y.org"),
    ("Grace", "Davies", "1995-02-28", "Derby", "grace@d.co.uk"),
    ("Harry", "Evans", "1983-11-11", "Bath", "harry.e@w.com"),
    ("Isla", "Thomas", "1999-04-04", "Hull", "isla.t@z.net"),
    ("Jack", "Roberts", "1961-08-18", "Leeds", "jackr@x.com"),
    ("Kate", "Walker", "1979-10-10", "Derby", "kate.w@d.co.uk"),
    ("Liam", "Wright", "1993-06-16", "York", "liam@y.org"),
    ("Mia", "Green", "1986-01-21", "Bath", "mia.green@w.com"),
    ("Noah", "Hall", "1970-09-30", "Hull", "noahh@z.net"),
    ("Olivia", "Wood", "1997-03-03", "Leeds", "olivia@x.com"),
    ("Peter", "Clark", "1964-12-12", "Derby", "pclark@d.co.uk"),
]


def _drop_middle(s: str) -> str:
    return s[: len(s) // 2] + s[len(s) // 2 + 1 :]


def noisy_people() -> pd.DataFrame:
    """1-4 records per person: a surname typo, a first-name typo without e-mail, a near dob."""
    rows = []
    for pid, (first, last, dob, city, email) in enumerate(PEOPLE):
        for k in range(1 + pid % 4):
            r = {"first_name": first, "surname": last, "dob": dob, "city": city, "email": email}
            if k == 1:
                r["surname"] = _drop_middle(last)
            if k == 2:
                r["first_name"], r["email"] = _drop_middle(first), None
            if k == 3:
                r["city"], r["dob"] = None, dob[:8] + f"{int(dob[8:]) % 28 + 1:02d}"
            rows.append({"rid": f"r{len(rows)}", **r, "person": pid})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_resolve_identities_finds_the_noisy_duplicates() -> None:
    df = noisy_people()
    out = resolve_identities(df, id_column="rid", fuzzy=FIELDS, threshold=0.9)
    assert out["rid"].tolist() == df["rid"].tolist()  # one row per record, input order
    s = pairwise_scores(df["person"], out["unified_id"])
    assert s["precision"] == 1.0 and s["recall"] == 1.0
    solo = df.groupby("person")["rid"].transform("size").to_numpy() == 1
    assert out.loc[solo, "match_probability"].isna().all()
    assert (out.loc[~solo, "match_probability"] >= 0.9).all()
    assert out["unified_id"].str.fullmatch(r"u_[0-9a-f]{16}").all()


def test_resolve_identities_exact_columns_only() -> None:
    df = pd.DataFrame(
        {
            "id": [10, 11, 12, 13, 14],
            "email": ["a@x", " a@x", None, "b@x", ""],
            "account": ["A1", None, "A1", None, "Z9"],
        }
    )
    out = resolve_identities(df, id_column="id", exact=["email", "account"])
    u = out["unified_id"].tolist()
    assert u[0] == u[1] == u[2] and len({u[0], u[3], u[4]}) == 3
    assert out["match_probability"].tolist()[:3] == [1.0, 1.0, 1.0]
    assert np.isnan(out["match_probability"].iloc[3])


def test_resolve_identities_rejects_bad_input() -> None:
    df = pd.DataFrame({"id": [1, 1], "name": ["a", "b"]})
    with pytest.raises(DataError, match="unique"):
        resolve_identities(df, id_column="id", exact=["name"])
    with pytest.raises(DataError, match="not in the records"):
        resolve_identities(df.assign(id=[1, 2]), id_column="id", fuzzy={"nope": "name"})
    with pytest.raises(ConfigError, match="unknown fuzzy kinds"):
        resolve_identities(df.assign(id=[1, 2]), id_column="id", fuzzy={"name": "colour"})
    with pytest.raises(ConfigError):
        resolve_identities(df.assign(id=[1, 2]), id_column="id")


@pytest.mark.slow
def test_unify_links_customers_that_share_no_identifier() -> None:
    df = noisy_people()
    cust = pd.DataFrame(
        {
            "source": "crm",
            "record_id": df["rid"],
            "source_record_id": df["rid"],
            "ingested_at": pd.Timestamp("2024-01-01"),
            "ts": pd.Timestamp("2024-01-01"),
            # every record has its own loyalty card: no shared deterministic identifier
            "loyalty_id": "L-" + df["rid"],
            "first_name": df["first_name"],
            "last_name": df["surname"],
            "date_of_birth": pd.to_datetime(df["dob"]),
            "city": df["city"],
            "email": df["email"],
        }
    )
    cust["email"] = np.where(
        cust["email"].notna(), "x" + cust.index.astype(str) + "@shop.com", None
    )
    opts = IdentityOptions(
        fuzzy=FuzzyOptions(
            enabled=True,
            threshold=0.9,
            max_pairs_u=1e5,
            fields={
                "first_name": "name",
                "last_name": "name",
                "date_of_birth": "date",
                "city": "text",
            },
        )
    )
    with open_store("duckdb") as store:
        store.load_arrow("customers", cust)
        res = unify(store, opts)
        m = store.sql("SELECT record_id, unified_id FROM record_map")
        got = dict(zip(m["record_id"], m["unified_id"], strict=True))
        s = pairwise_scores(df["person"], df["rid"].map(got))
        assert s["precision"] == 1.0 and s["recall"] >= 0.9
        links = store.sql("SELECT * FROM identity_links WHERE kind = 'probabilistic'")
        assert res.probabilistic_links == len(links) > 0
        assert (links["match_probability"] >= 0.9).all()
        assert links["evidence_pair_record_id"].notna().all()
        again = unify(store, opts)  # nothing new: the stored links are reused
        assert again.mode == "incremental" and again.probabilistic_links == res.probabilistic_links
        m2 = store.sql("SELECT record_id, unified_id FROM record_map")
        assert dict(zip(m2["record_id"], m2["unified_id"], strict=True)) == got


@pytest.mark.realdata
@pytest.mark.slow
def test_fake_1000_pairwise_f1(shared_data) -> None:
    df = pd.read_csv(shared_data / "identity" / "fake_1000.csv")
    out = resolve_identities(
        df.drop(columns=["cluster"]),
        id_column="unique_id",
        fuzzy={
            "first_name": "name",
            "surname": "name",
            "dob": "date",
            "city": "text",
            "email": "email",
        },
        threshold=0.9,
    )
    s = pairwise_scores(df["cluster"], out["unified_id"])
    assert s["f1"] >= 0.90, s
