"""Invariants of the engine over generated event sequences (hypothesis)."""

from __future__ import annotations

import pandas as pd
from _triggers_world import CART, add_profiles, at, engine, events, messages, rows, timers
from cip.profiles.store import open_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PEOPLE = ("a", "b", "c")
KINDS = ("add_to_cart", "add_to_cart", "checkout", "purchase", "product_view")

event_lists = st.lists(
    st.tuples(st.sampled_from(PEOPLE), st.sampled_from(KINDS), st.integers(0, 24 * 60)),
    min_size=1,
    max_size=25,
)
ticks = st.lists(st.integers(0, 26 * 60), min_size=1, max_size=5)


def _run(evs, clock, *, twice: bool):
    """Feed each event when the clock passes it; with ``twice`` every batch is sent twice."""
    with open_store("duckdb") as store:
        add_profiles(store, [{"uid": u} for u in PEOPLE])
        browse = {"name": "browse", "when": {"event": "product_view"}, "wait": "45m"}
        eng = engine(store, [CART, browse])
        table = events(*[(f"e{i}", u, k, at(m), "sku-1") for i, (u, k, m) in enumerate(evs)])
        before = at(-1)
        for now_min in sorted(set(clock)) + [27 * 60]:
            now = at(now_min)
            batch = table[(table["ts"] > before) & (table["ts"] <= now)]  # what arrived since
            for _ in range(2 if twice else 1):
                eng.process(now, events=batch)
            before = now
        return rows(messages(store)), rows(timers(store)), table


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=event_lists, clock=ticks)
def test_replays_change_nothing_and_sends_obey_unless_and_caps(evs, clock):
    once_m, once_t, table = _run(evs, clock, twice=False)
    twice_m, twice_t, _ = _run(evs, clock, twice=True)
    assert once_m == twice_m and once_t == twice_t
    m = pd.DataFrame(
        once_m,
        columns=[
            "message_id", "trigger", "unified_id", "window_key", "step", "channel", "decision",
            "control", "reason", "items", "decided_at", "deferred_until",
        ],
    )  # fmt: skip
    assert m["message_id"].is_unique
    sent = m[m["decision"] == "sent"]
    for r in sent[sent["trigger"] == "abandoned_cart"].itertuples():
        start = table.loc[table["event_id"] == r.window_key.removeprefix("event:"), "ts"].iloc[0]
        mine = table[
            (table["unified_id"] == r.unified_id)
            & table["event_type"].isin(["checkout", "purchase"])
        ]
        stop = mine[(mine["ts"] > start) & (mine["ts"] <= pd.Timestamp(r.decided_at))]
        assert stop.empty, "a cart message went out after a checkout or purchase"
    for _, grp in sent.groupby("unified_id"):
        ts = sorted(pd.to_datetime(grp["decided_at"]))
        assert all(b - a >= pd.Timedelta(hours=16) for a, b in zip(ts, ts[1:], strict=False))
