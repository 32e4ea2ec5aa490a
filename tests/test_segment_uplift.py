"""Uplift scores in segments (issue M): ``uplift_<campaign>`` and ``sleeping_dog_<campaign>``.

Stored ``uplift_scores`` of campaign ``spring-sale`` (fields ``uplift_spring_sale``,
``sleeping_dog_spring_sale``) on the hand-made persons of ``_segment_data``; a build
reads the campaign's latest scores at or before its as_of. Expected members worked out
by hand next to each test.
"""

from __future__ import annotations

import json

import pandas as pd
from _segment_data import A1, A2, D, load, new_store
from cip.activation import Condition, SegmentDefinition, build_segments
from cip.profiles.tables import UPLIFT_SCORES, ensure_tables

#: scored the day before A1 (read by a build at A1)
EARLY = {"u1": 0.30, "u2": 0.10, "u3": -0.20, "u4": 0.05, "u5": 0.0, "u6": 0.25}
#: scored at A2 (read by a build at A2 only)
LATE = {"u1": -0.50, "u2": 0.40, "u3": 0.10, "u4": 0.02, "u5": 0.01, "u6": 0.20, "u8": 0.30}


def _scores(store) -> None:
    ensure_tables(store, UPLIFT_SCORES)
    rows = []
    for at, up in ((A1 - D, EARLY), (A2, LATE)):
        for uid, u in up.items():
            rows.append(("spring-sale", uid, at, "3", u, u < -0.05))
    rows.append(("other", "u1", A1 - D, "1", 0.9, False))
    df = pd.DataFrame(
        rows, columns=["campaign", "unified_id", "as_of", "model_version", "uplift", "sleeping_dog"]
    ).astype({"as_of": "datetime64[us]"})
    store.load_arrow("uplift_scores", df)


def _members(store, segment, as_of) -> dict[str, tuple]:
    df = store.sql(
        "SELECT unified_id, score, reasons FROM segment_members WHERE segment = ? AND as_of = ? "
        "ORDER BY unified_id",
        [segment, as_of],
    )
    return {r.unified_id: (r.score, json.loads(r.reasons)) for r in df.itertuples()}


PERSUADABLE = SegmentDefinition(
    name="persuadable",
    kind="predictive",
    score="uplift_spring_sale",
    conditions=[
        Condition(field="uplift_spring_sale", op="top_pct", value=30),
        Condition(field="sleeping_dog_spring_sale", op="==", value=False),
    ],
)
NO_DOGS = SegmentDefinition(
    name="no_dogs",
    kind="predictive",
    conditions=[Condition(field="sleeping_dog_spring_sale", op="==", value=False)],
)


def test_top_uplift_without_sleeping_dogs_reads_the_latest_scores_at_the_build(any_store) -> None:
    store = load(any_store)  # DuckDB and PostgreSQL
    _scores(store)
    rep = build_segments(store, [PERSUADABLE, NO_DOGS], A1)
    assert rep.skipped == {}
    # A1: 6 scored, top 30 % = ceil(1.8) = 2 highest: u1 .30, u6 .25 (neither a sleeping dog)
    got = _members(store, "persuadable", A1)
    assert {u: s for u, (s, _) in got.items()} == {"u1": 0.30, "u6": 0.25}
    assert set(_members(store, "no_dogs", A1)) == {"u1", "u2", "u4", "u5", "u6"}  # u3 -.20
    build_segments(store, [PERSUADABLE, NO_DOGS], A2)
    # A2: 7 scored, top 30 % = ceil(2.1) = 3: u2 .40, u8 .30, u6 .20; u1 is now a sleeping dog
    assert {u: s for u, (s, _) in _members(store, "persuadable", A2).items()} == {
        "u2": 0.40,
        "u8": 0.30,
        "u6": 0.20,
    }
    assert set(_members(store, "no_dogs", A2)) == {"u2", "u3", "u4", "u5", "u6", "u8"}


def test_a_campaign_without_scores_skips_the_segment_with_the_command_to_run() -> None:
    store = new_store()
    _scores(store)
    later = SegmentDefinition(
        name="later",
        kind="predictive",
        conditions=[Condition(field="uplift_autumn", op=">", value=0)],
    )
    rep = build_segments(store, [later, NO_DOGS], A1)
    assert set(rep.skipped) == {"later"}
    assert "cip train uplift --campaign autumn" in rep.skipped["later"]
    assert "spring-sale" in rep.skipped["later"]  # the campaigns that are scored


def test_scores_after_the_build_are_not_read() -> None:
    store = new_store()
    _scores(store)
    store.execute("DELETE FROM uplift_scores WHERE as_of < ?", [A2.to_pydatetime()])
    rep = build_segments(store, [NO_DOGS], A1)  # only A2 scores: in the build's future
    assert "no_dogs" in rep.skipped and "at or before" in rep.skipped["no_dogs"]


def test_two_campaigns_in_one_segment_join_each_once() -> None:
    store = new_store()
    _scores(store)
    both = SegmentDefinition(
        name="both",
        kind="predictive",
        conditions=[
            Condition(field="uplift_other", op=">", value=0.5),
            Condition(field="uplift_spring_sale", op=">", value=0.2),
        ],
    )
    build_segments(store, [both], A1)
    assert set(_members(store, "both", A1)) == {"u1"}  # other .9 and spring .30
