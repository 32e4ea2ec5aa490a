"""Leakage property (hypothesis): data at or after as_of never changes a feature.

The feature SQL is compiled once (the definitions do not depend on the data)
and re-run on every generated data set, which keeps the property test fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import ibis
import pandas as pd
import pytest
from cip.features import compute_features, load_inputs
from cip.profiles.store import Store, open_store
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests._features_data import T, frame

AS_OF = T("2024-07-01")
DAY = 86400
PEOPLE = ["c0", "c1", "c2"]
EVENT_TYPES = ["page_view", "product_view", "add_to_cart", "purchase", "email_send",
               "email_open", "email_click", "review", "login"]  # fmt: skip
ITEMS = ["i1", "i2", "i3"]

pytestmark = pytest.mark.slow


def _offsets(past: bool):
    # whole seconds before as_of (past) or at/after it (future), within ~400 days
    return st.integers(-400 * DAY, -1) if past else st.integers(0, 400 * DAY)


def orders(past: bool):
    return st.lists(
        st.tuples(
            st.sampled_from(PEOPLE),
            _offsets(past),
            st.integers(1, 50_000),
            st.sampled_from(["completed", "completed", "returned", "cancelled"]),
            st.sampled_from(["web", "app", "store", None]),
        ),
        max_size=8,
    )


def events(past: bool):
    return st.lists(
        st.tuples(
            st.sampled_from(PEOPLE),
            _offsets(past),
            st.sampled_from(EVENT_TYPES),
            st.sampled_from([None, "s1", "s2"]),
            st.sampled_from([None, *ITEMS]),
            st.sampled_from([None, 1.0, 2.0, 5.0]),
        ),
        max_size=12,
    )


def lines(past: bool):
    return st.lists(
        st.tuples(
            st.sampled_from(PEOPLE),
            _offsets(past),
            st.sampled_from(ITEMS),
            st.integers(1, 3),
            st.integers(1, 9_999),
            st.sampled_from(["completed", "returned"]),
        ),
        max_size=5,
    )


def _ts(offset: int) -> pd.Timestamp:
    return AS_OF + pd.Timedelta(seconds=offset)


def _frames(o: list, e: list, ln: list, tag: str) -> dict[str, pd.DataFrame]:
    return {
        "_orders_src": frame("orders", [
            {"order_id": f"{tag}o{i}", "customer_id": c, "ts": _ts(s), "amount": a / 100,
             "status": stt, "channel": ch} for i, (c, s, a, stt, ch) in enumerate(o)
        ]),
        "events": frame("events", [
            {"customer_id": c, "ts": _ts(s), "event_type": et, "session_id": sid,
             "item_id": it, "rating": r} for c, s, et, sid, it, r in e
        ]),
        "order_lines": frame("order_lines", [
            {"order_id": f"{tag}l{i}", "customer_id": c, "ts": _ts(s), "item_id": it,
             "quantity": float(q), "unit_price": p / 100, "status": stt}
            for i, (c, s, it, q, p, stt) in enumerate(ln)
        ]),
    }  # fmt: skip


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[Store, str]]:
    """A store with every input table present, and the compiled feature SQL."""
    store = open_store("duckdb")
    store.load_arrow(
        "products", frame("products", [{"item_id": i, "category": i[-1]} for i in ITEMS])
    )
    seed = _frames([("c0", -DAY, 100, "completed", "web")], [("c0", -DAY, "login", None, None, None)],
                   [("c0", -DAY, "i1", 1, 100, "completed")], "seed")  # fmt: skip
    for table, df in seed.items():
        store.load_arrow(table, df)
    sql = ibis.to_sql(compute_features(load_inputs(store), AS_OF))
    yield store, sql
    store.close()


def _features(engine: tuple[Store, str], o: list, e: list, ln: list) -> pd.DataFrame:
    store, sql = engine
    with store.transaction():
        for table, df in _frames(o, e, ln, "x").items():
            store.execute(f'DELETE FROM "{table}"')
            if len(df):
                store.load_arrow(table, df)
    return store.sql(sql).sort_values("unified_id").reset_index(drop=True)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    o=orders(True), e=events(True), ln=lines(True),
    fo=orders(False), fe=events(False), fl=lines(False),
)  # fmt: skip
def test_future_records_never_change_features(engine, o, e, ln, fo, fe, fl) -> None:
    assume(fo or fe or fl)
    before = _features(engine, o, e, ln)
    after = _features(engine, o + fo, e + fe, ln + fl)
    pd.testing.assert_frame_equal(before, after, check_exact=True)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(o=orders(True), e=events(True), ln=lines(True), data=st.data())
def test_removing_a_past_record_changes_features(engine, o, e, ln, data) -> None:
    in_lookback = -365 * DAY
    # removable: completed orders, events and lines inside the lookback window
    cands = [("o", i) for i, r in enumerate(o) if r[3] == "completed" and r[1] >= in_lookback]
    cands += [("e", i) for i, r in enumerate(e) if r[1] >= in_lookback]
    cands += [("l", i) for i, r in enumerate(ln) if r[5] == "completed" and r[1] >= in_lookback]
    assume(cands)
    kind, idx = data.draw(st.sampled_from(cands))
    drop = {"o": o, "e": e, "l": ln}
    reduced = {
        k: [r for i, r in enumerate(v) if not (k == kind and i == idx)] for k, v in drop.items()
    }
    full = _features(engine, o, e, ln)
    less = _features(engine, reduced["o"], reduced["e"], reduced["l"])
    assert not full.equals(less)
