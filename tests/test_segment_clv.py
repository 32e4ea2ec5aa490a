"""CLV outputs in segments and exports: top share of clv, p_alive, next_order_date within N days.

Hand-made scores at A1 (2024-03-01) for u1..u6 of ``_segment_data`` (expected answers inline):

====  =====  =====  ===============
who   clv    alive  next_order_date
====  =====  =====  ===============
u1    900    0.95   2024-03-01 (A1: inside "next 7 days")
u2    300    0.60   2024-03-07 (inside)
u3     40    0.10   2024-03-08 (A1 + 7 days: outside, the window is [A1, A1 + 7 d))
u4     20    0.25   2024-02-29 (the day before: only in "last 3 days")
u5      0    null   null (never bought)
u6    600    0.80   2024-04-20
====  =====  =====  ===============
"""

from __future__ import annotations

import pandas as pd
import pytest
from _segment_data import A1, A2, new_store, scores
from cip.activation import (
    Condition,
    SegmentDefinition,
    build_segments,
    default_definitions,
    export_segment,
)
from cip.profiles.errors import ConfigError
from cip.profiles.tables import SCORES, ensure_tables

CLV = {
    "u1": (900.0, 0.95, "2024-03-01"),
    "u2": (300.0, 0.60, "2024-03-07"),
    "u3": (40.0, 0.10, "2024-03-08"),
    "u4": (20.0, 0.25, "2024-02-29"),
    "u5": (0.0, None, None),
    "u6": (600.0, 0.80, "2024-04-20"),
}


def clv_store():
    """The activation fixtures with the CLV columns in scores at A1 (none at A2)."""
    store = new_store()
    ensure_tables(store, SCORES)  # the fixture's scores table predates the CLV columns
    s = scores(A1)
    s["clv"] = [CLV[u][0] for u in s.unified_id]
    s["expected_orders"] = s["clv"] / 100.0
    s["p_alive"] = [CLV[u][1] for u in s.unified_id]
    s["next_order_date"] = pd.to_datetime([CLV[u][2] for u in s.unified_id]).date
    s["clv_model_version"] = "7"
    store.execute("DELETE FROM scores WHERE as_of = ?", [A1.to_pydatetime()])
    store.load_arrow("scores", s, mode="append")
    return store


def seg(name: str, *conditions: Condition, score: str | None = None) -> SegmentDefinition:
    return SegmentDefinition(
        name=name, kind="predictive", conditions=list(conditions), score=score, purpose="email"
    )


def members(store, name: str, as_of=A1) -> dict[str, float | None]:
    df = store.sql(
        "SELECT unified_id, score FROM segment_members WHERE segment = ? AND as_of = ? "
        "ORDER BY unified_id",
        [name, as_of],
    )
    return {r.unified_id: (None if pd.isna(r.score) else r.score) for r in df.itertuples()}


def test_clv_top_share_p_alive_and_next_order_windows() -> None:
    store = clv_store()
    defs = [
        seg("top_clv", Condition(field="clv", op="top_pct", value=10), score="clv"),
        seg("top_half", Condition(field="clv", op="top_pct", value=50), score="clv"),
        seg("lapsing", Condition(field="p_alive", op="<", value=0.3), score="p_alive"),
        seg("due", Condition(field="next_order_date", op="within_days", value=7)),
        seg("just_due", Condition(field="next_order_date", op="within_days", value=-3)),
        seg("orders", Condition(field="expected_orders", op=">", value=3)),  # u2 has 3.0
    ]
    rep = build_segments(store, defs, A1)
    assert not rep.skipped
    # 6 persons with a clv: top 10 % = ceil(0.6) = 1 person, top 50 % = 3
    assert members(store, "top_clv") == {"u1": 900.0}
    assert members(store, "top_half") == {"u1": 900.0, "u2": 300.0, "u6": 600.0}
    assert members(store, "lapsing") == {"u3": 0.10, "u4": 0.25}  # u5's null p_alive: never
    assert set(members(store, "due")) == {"u1", "u2"}  # [A1, A1 + 7 d): u3's A1 + 7 d is out
    assert set(members(store, "just_due")) == {"u4"}  # [A1 - 3 d, A1)
    assert set(members(store, "orders")) == {"u1", "u6"}
    reasons = store.sql(
        "SELECT reasons FROM segment_members WHERE segment = 'due' AND unified_id = 'u1'"
    )["reasons"].iloc[0]
    assert "next_order_date within the next 7 days" in reasons


def test_default_clv_segments_build_only_with_clv_scores() -> None:
    store = clv_store()
    rep = build_segments(store, default_definitions(), A1)
    assert not rep.skipped
    assert members(store, "high_clv") == {"u1": 900.0}
    # next order within 7 days and p_alive >= 0.5: u1 and u2 (u3 is due later and lapsing)
    assert members(store, "replenishment_due") == {"u1": 0.95, "u2": 0.60}
    # A2 has scores, but no CLV outputs (no CLV champion then): skipped, saying what to run
    rep2 = build_segments(store, default_definitions(), A2)
    assert set(rep2.skipped) == {"high_clv", "replenishment_due"}
    assert "cip train clv" in rep2.skipped["high_clv"]
    assert members(store, "likely_buyers", A2)  # the other predictive segments still build


def test_within_days_validation() -> None:
    for bad in (0, 1.5, True, "7", 4000):
        with pytest.raises(ValueError, match="within_days"):
            Condition(field="next_order_date", op="within_days", value=bad)
    assert (
        Condition(field="first_seen", op="within_days", value=-30).describe()
        == "first_seen within the last 30 days"
    )
    store = clv_store()
    wrong = seg("wrong", Condition(field="clv", op="within_days", value=7))
    with pytest.raises(ConfigError, match="within_days needs a date or time field"):
        build_segments(store, [wrong], A1)


def test_export_carries_clv_columns(tmp_path) -> None:
    store = clv_store()
    build_segments(store, [seg("top_half", Condition(field="clv", op="top_pct", value=50))], A1)
    out = tmp_path / "top.parquet"
    rep = export_segment(
        store, "top_half", out, "parquet", columns=["clv", "p_alive", "next_order_date"]
    )
    df = pd.read_parquet(out)
    # u1, u2, u6 are members; e-mail consent and an address: u1, u2, u6 (see _segment_data)
    assert rep.exported == 3 and rep.columns == ["clv", "p_alive", "next_order_date"]
    assert list(df.columns[-3:]) == ["clv", "p_alive", "next_order_date"]
    got = {r.unified_id: (r.clv, r.p_alive, str(r.next_order_date)[:10]) for r in df.itertuples()}
    assert got == {u: CLV[u] for u in ("u1", "u2", "u6")}
    with pytest.raises(ConfigError, match="unknown export column"):
        export_segment(store, "top_half", out, "csv", columns=["email"])
