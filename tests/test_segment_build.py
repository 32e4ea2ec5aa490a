"""build_segments: each kind of segment on hand-computed fixtures, transitions, atomicity."""

from __future__ import annotations

import json

import cip.activation.build as build_mod
import pandas as pd
import pytest
from _segment_data import A1, A2, new_store
from cip.activation import (
    Condition,
    EventRule,
    SegmentDefinition,
    build_segments,
    default_definitions,
    segment_sizes,
    segment_transitions,
)
from cip.profiles.errors import ConfigError, DataError, NotFoundError


def members(store, segment, as_of=A1) -> dict[str, tuple]:
    df = store.sql(
        "SELECT unified_id, score, reasons, model_version FROM segment_members "
        "WHERE segment = ? AND as_of = ? ORDER BY unified_id",
        [segment, as_of],
    )
    return {
        r.unified_id: (r.score, json.loads(r.reasons), r.model_version) for r in df.itertuples()
    }


def changes(store, as_of) -> set[tuple[str, str, str]]:
    df = store.sql(
        "SELECT segment, unified_id, change FROM segment_changes WHERE as_of = ?", [as_of]
    )
    return set(map(tuple, df.to_numpy().tolist()))


def rfm(name, *segs, **kw):
    return SegmentDefinition(name=name, kind="rfm", rfm_segments=list(segs), **kw)


def test_rfm_segments_follow_the_feature_table():
    store = new_store()
    defs = [rfm("champions", "Champions", score="monetary"), rfm("at_risk", "At Risk")]
    build_segments(store, defs, A1)
    assert members(store, "champions") == {
        "u1": (1000.0, ["RFM segment Champions"], None),
        "u6": (800.0, ["RFM segment Champions"], None),
    }
    got = members(store, "at_risk")
    assert set(got) == {"u3", "u4"} and all(v[0] != v[0] for v in got.values())  # score NaN


def test_predictive_threshold_and_top_percentile():
    # churn >= 0.7: u2 .8, u3 .9, u4 .75, u6 .7. monetary_365d non-null for 5 persons
    # (u5 null), ranks desc: u1 1, u6 2, u2 3, u3 4, u4 5; top 50 %: (rank-1)*100 < 250,
    # i.e. ranks 1-3 = u1, u6, u2. Intersection: u2, u6.
    store = new_store()
    d = SegmentDefinition(
        name="hvar",
        kind="predictive",
        conditions=[
            Condition(field="churn_probability", op=">=", value=0.7),
            Condition(field="monetary_365d", op="top_pct", value=50),
        ],
        score="churn_probability",
    )
    build_segments(store, [d], A1)
    reasons = ["churn_probability >= 0.7", "monetary_365d in top 50%"]
    assert members(store, "hvar") == {
        "u2": (0.8, reasons + ["model says u2"], "churn:3,propensity:2"),
        "u6": (0.7, reasons + ["model says u6"], "churn:3,propensity:2"),
    }


def test_percentiles_include_ties_and_skip_nulls():
    store = new_store()
    # monetary at A1: 1000, 500, 200, 100, 50, 800 -> bottom 34 % of 6: (rank-1)*100 < 204,
    # ranks asc 1..3 = u5 (50), u4 (100), u3 (200)
    store.execute("UPDATE features_default SET monetary = 100 WHERE unified_id = 'u3'")
    # now u3 and u4 tie at 100 (rank 2, 2) and u2 is rank 4 -> bottom 34 %: u5, u4, u3
    d = SegmentDefinition(
        name="low",
        kind="rule",
        conditions=[Condition(field="monetary", op="bottom_pct", value=34)],
    )
    build_segments(store, [d], A1)
    assert set(members(store, "low")) == {"u3", "u4", "u5"}
    # top 20 % of monetary_365d: 5 non-null values, only rank 1 (u1); u5's null never counts
    d2 = SegmentDefinition(
        name="top",
        kind="rule",
        conditions=[Condition(field="monetary_365d", op="top_pct", value=20)],
    )
    build_segments(store, [d2], A1)
    assert set(members(store, "top")) == {"u1"}


def test_any_group_lists_only_the_reasons_that_hold_and_traits_work():
    store = new_store()
    d = SegmentDefinition(
        name="mixed",
        kind="rule",
        match="any",
        conditions=[
            Condition(field="monetary", op=">", value=900),  # u1
            Condition(field="country", op="in", value=["DE"]),  # u5 (a profile trait)
        ],
    )
    build_segments(store, [d], A1)
    got = members(store, "mixed")
    assert {u: v[1] for u, v in got.items()} == {
        "u1": ["monetary > 900"],
        "u5": ["country in [DE]"],
    }
    assert all(v[2] is None for v in got.values())  # no scores used: no model version


def test_abandoned_cart_and_browse_with_identity():
    store = new_store()
    defs = [d for d in default_definitions() if d.name.startswith("abandoned")]
    build_segments(store, defs, A1)
    cart = members(store, "abandoned_cart")
    assert {u: v[0] for u, v in cart.items()} == {"u1": 1.0, "u4": 2.0}
    assert cart["u1"][1] == ["add_to_cart in the last 24 h, no purchase since"]
    browse = members(store, "abandoned_browse")
    assert {u: v[0] for u, v in browse.items()} == {"u1": 3.0, "u7": 3.0}
    assert browse["u1"][1] == [
        "product_view of category Shoes: 3 times in the last 7 days, no purchase in that window"
    ]


def test_event_rules_without_identity_use_customer_id():
    store = new_store(identity=False)
    defs = [d for d in default_definitions() if d.name.startswith("abandoned")]
    build_segments(store, defs, A1)
    assert set(members(store, "abandoned_cart")) == {"u1", "u4"}
    assert set(members(store, "abandoned_browse")) == {"u1", "u7"}


def test_event_rule_with_conditions_needs_a_feature_row():
    store = new_store()
    d = SegmentDefinition(
        name="browse_gb",
        kind="rule",
        conditions=[Condition(field="monetary", op=">=", value=0)],
        events=EventRule(event_type="product_view", within_hours=168, min_count=3, by="category"),
    )
    build_segments(store, [d], A1)
    assert set(members(store, "browse_gb")) == {"u1"}  # u7 has no feature row


def test_defaults_build_and_transitions_across_two_builds():
    store = new_store()
    r1 = build_segments(store, default_definitions(), A1)
    # the fixture's scores carry no CLV outputs (no CLV champion): the CLV segments wait
    assert set(r1.skipped) == {"high_clv", "replenishment_due"} and len(r1.segments) == 15
    assert changes(store, A1) >= {("champions", "u1", "entered"), ("champions", "u6", "entered")}
    r2 = build_segments(store, default_definitions(), A2)
    rfm_changes = {
        c
        for c in changes(store, A2)
        if c[0] in ("champions", "loyal", "at_risk", "lost", "new_customers")
    }
    assert rfm_changes == {
        ("champions", "u1", "exited"),
        ("loyal", "u1", "entered"),
        ("at_risk", "u3", "exited"),
        ("lost", "u3", "entered"),
        ("new_customers", "u8", "entered"),
    }
    by = {s.segment: s for s in r2.segments}
    assert (by["champions"].members, by["champions"].entered, by["champions"].exited) == (1, 0, 1)
    assert by["champions"].previous_as_of == A1.to_pydatetime()
    # no events after A1 at A2: everyone left the abandoned_cart segment
    assert (by["abandoned_cart"].members, by["abandoned_cart"].exited) == (0, 2)
    moves = segment_transitions(store, A2)
    pairs = {(r.from_segment, r.to_segment): r.n for r in moves.itertuples()}
    assert pairs[("champions", "loyal")] == 1 and pairs[("(none)", "new_customers")] == 1
    sizes = segment_sizes(store).set_index("segment")
    assert sizes.loc["loyal", "members"] == 2 and sizes.loc["loyal", "entered"] == 1


def test_rebuild_is_idempotent_and_backfill_recomputes_next_changes():
    store = new_store()
    defs = [rfm("champions", "Champions"), rfm("loyal", "Loyal")]
    build_segments(store, defs, A2)
    first = store.sql("SELECT * FROM segment_members ORDER BY ALL")
    build_segments(store, defs, A2)
    pd.testing.assert_frame_equal(first, store.sql("SELECT * FROM segment_members ORDER BY ALL"))
    assert store.count("segment_builds") == 2
    # A2 was the first build: all its members entered
    assert changes(store, A2) == {
        ("champions", "u6", "entered"),
        ("loyal", "u1", "entered"),
        ("loyal", "u2", "entered"),
    }
    # backfill A1: A2's changes are now against A1
    build_segments(store, defs, A1)
    assert changes(store, A2) == {("champions", "u1", "exited"), ("loyal", "u1", "entered")}
    # rebuilding one segment leaves the other segments of that as_of alone
    store.execute("DELETE FROM features_default WHERE unified_id = 'u6'")
    build_segments(store, defs[:1], A2)
    assert members(store, "champions", A2) == {} and set(members(store, "loyal", A2)) == {
        "u1",
        "u2",
    }
    assert changes(store, A2) == {
        ("champions", "u1", "exited"),
        ("champions", "u6", "exited"),
        ("loyal", "u1", "entered"),
    }


def _state(store):
    return {
        t: store.sql(f"SELECT * FROM {t} ORDER BY ALL")
        for t in ("segment_members", "segment_changes", "segment_builds")
    }


@pytest.mark.parametrize("target", ["_insert_members", "_recompute_changes"])
def test_crash_mid_build_keeps_previous_build(monkeypatch, target):
    store = new_store()
    defs = default_definitions()
    build_segments(store, defs, A1)
    before = _state(store)
    real = getattr(build_mod, target)
    calls = {"n": 0}

    def boom(*a, **kw):
        calls["n"] += 1
        if calls["n"] >= 3 or target == "_recompute_changes":
            raise RuntimeError("injected failure")
        return real(*a, **kw)

    monkeypatch.setattr(build_mod, target, boom)
    with pytest.raises(RuntimeError, match="injected"):
        build_segments(store, defs, A1)  # a rebuild of the same as_of: deletes came first
    with pytest.raises(RuntimeError, match="injected"):
        build_segments(store, defs, A2)
    after = _state(store)
    for t, df in before.items():
        pd.testing.assert_frame_equal(df, after[t])
    monkeypatch.setattr(build_mod, target, real)
    build_segments(store, defs, A2)  # and the store still works afterwards
    assert store.sql("SELECT count(DISTINCT as_of) AS n FROM segment_builds")["n"][0] == 2


def test_erased_people_are_never_members_nor_exits():
    store = new_store()
    defs = [rfm("champions", "Champions")]
    build_segments(store, defs, A1)
    store.load_arrow(
        "erased", pd.DataFrame({"unified_id": ["u1", "u6"], "erased_at": [A2, A2]}), mode="replace"
    )
    build_segments(store, defs, A2)
    assert members(store, "champions", A2) == {}
    assert changes(store, A2) == set()  # u1 left, but an erased person is not announced


def test_predictive_segments_are_skipped_without_scores():
    store = new_store(with_scores=False)
    rep = build_segments(store, default_definitions(), A1)
    assert set(rep.skipped) == {
        "high_value_at_risk",
        "likely_buyers",
        "high_clv",
        "replenishment_due",
    }
    assert "cip score" in rep.skipped["likely_buyers"] and "cip score" in rep.skipped["high_clv"]
    assert len(rep.segments) == 13 and "no scores table" in rep.notes


def test_unknown_feature_names_the_segment_and_close_matches():
    store = new_store()
    d = SegmentDefinition(
        name="typo", kind="rule", conditions=[Condition(field="monetary_356d", op=">", value=1)]
    )
    with pytest.raises(ConfigError, match=r"segment 'typo'.*'monetary_356d'.*monetary_365d"):
        build_segments(store, [d], A1)
    pii = SegmentDefinition(
        name="pii", kind="rule", conditions=[Condition(field="email", op="==", value="x")]
    )
    with pytest.raises(ConfigError, match="personal data"):
        build_segments(store, [pii], A1)
    bad = SegmentDefinition(
        name="bad", kind="rule", conditions=[Condition(field="monetary", op=">", value="lots")]
    )
    with pytest.raises(ConfigError, match=r"segment 'bad'.*'lots'"):
        build_segments(store, [bad], A1)
    assert not store.has_table("segment_members")  # nothing written on a config error


def test_missing_snapshot_is_a_clear_error():
    store = new_store()
    with pytest.raises(DataError, match="2024-04-01 00:00:00, 2024-03-01"):
        build_segments(store, default_definitions(), "2024-05-01")
    store.execute("DROP TABLE features_default")
    with pytest.raises(NotFoundError, match="cip features"):
        build_segments(store, default_definitions(), A1)
