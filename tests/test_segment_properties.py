"""Property tests: percentile conditions and changes match plain reference definitions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from cip.activation import Condition, SegmentDefinition, build_segments
from cip.profiles.store import open_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

A1, A2 = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")
STORE = open_store("duckdb")

values = st.lists(
    st.one_of(st.none(), st.integers(0, 6).map(float)), min_size=1, max_size=25
)  # small integers: many ties


def _features(vals: list[float | None], as_of: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unified_id": [f"u{i:02d}" for i in range(len(vals))],
            "as_of": pd.Series([as_of] * len(vals), dtype="datetime64[us]"),
            "x": pd.array(vals, dtype="Float64"),
        }
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vals=values, pct=st.sampled_from([1, 10, 20, 33.3, 50, 99, 100]), top=st.booleans())
def test_percentile_membership_matches_the_rank_definition(vals, pct, top):
    STORE.load_arrow("features_default", _features(vals, A1), mode="replace")
    op = "top_pct" if top else "bottom_pct"
    d = SegmentDefinition(
        name="p", kind="rule", conditions=[Condition(field="x", op=op, value=pct)]
    )
    build_segments(STORE, [d], A1)
    got = set(
        STORE.sql("SELECT unified_id FROM segment_members WHERE as_of = ?", [A1])["unified_id"]
    )
    x = np.array([np.nan if v is None else v for v in vals])
    n = int(np.sum(~np.isnan(x)))
    want = set()
    for i, v in enumerate(x):
        if math.isnan(v):
            continue
        better = np.sum(x[~np.isnan(x)] > v) if top else np.sum(x[~np.isnan(x)] < v)
        if better < pct * n / 100:  # fewer than p % of the values are strictly better
            want.add(f"u{i:02d}")
    assert got == want


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=st.lists(st.booleans(), min_size=1, max_size=20),
    b=st.lists(st.booleans(), min_size=1, max_size=20),
)
def test_changes_are_the_set_differences_of_consecutive_builds(a, b):
    STORE.execute("DROP TABLE IF EXISTS segment_members")
    STORE.execute("DROP TABLE IF EXISTS segment_changes")
    STORE.execute("DROP TABLE IF EXISTS segment_builds")
    f1 = _features([1.0 if v else 0.0 for v in a], A1)
    f2 = _features([1.0 if v else 0.0 for v in b], A2)
    STORE.load_arrow("features_default", pd.concat([f1, f2]), mode="replace")
    d = SegmentDefinition(
        name="s", kind="rule", conditions=[Condition(field="x", op="==", value=1)]
    )
    for as_of in (A2, A1):  # out of order on purpose: the backfill recomputes A2's changes
        build_segments(STORE, [d], as_of)
    m1 = {f"u{i:02d}" for i, v in enumerate(a) if v}
    m2 = {f"u{i:02d}" for i, v in enumerate(b) if v}
    ch = STORE.sql("SELECT unified_id, change FROM segment_changes WHERE as_of = ?", [A2])
    assert set(ch.loc[ch.change == "entered", "unified_id"]) == m2 - m1
    assert set(ch.loc[ch.change == "exited", "unified_id"]) == m1 - m2
