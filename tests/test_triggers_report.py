"""Read-only views: status per trigger, the message log and the dry run."""

from __future__ import annotations

import pytest
from _triggers_world import CART, add_profiles, at, engine, events
from cip.activation.triggers import explain, message_log, trigger_status
from cip.profiles.errors import NotFoundError
from cip.profiles.store import open_store


@pytest.fixture
def world():
    with open_store("duckdb") as store:
        add_profiles(store, [{"uid": "p1"}, {"uid": "p2", "consent": set()}, {"uid": "p3"}])
        eng = engine(store, [CART])
        eng.process(
            at(1),
            events=events(
                ("e1", "p1", "add_to_cart", at(0), "sku-1"),
                ("e2", "p2", "add_to_cart", at(0), "sku-1"),
                ("e3", "p3", "add_to_cart", at(0), "sku-1"),
                ("e4", "p3", "purchase", at(5), "sku-1"),
            ),
        )
        eng.process(at(31))
        eng.process(at(40), events=events(("e5", "p1", "add_to_cart", at(39), "sku-2")))
        yield store, eng


def test_status_counts_timers_and_decisions(world):
    store, _ = world
    (row,) = trigger_status(store).to_dict("records")
    assert row["trigger"] == "abandoned_cart"
    assert (row["waiting"], row["done"], row["cancelled"]) == (0, 2, 1)
    assert (row["sent"], row["no_consent"], row["capped"]) == (1, 1, 0)
    assert row["last_decided"] == at(31)


def test_message_log_filters(world):
    store, _ = world
    assert len(message_log(store)) == 2
    log = message_log(store, trigger="abandoned_cart", unified_id="p2")
    assert log[["unified_id", "decision", "reason"]].values.tolist() == [
        ["p2", "no_consent", "no consent for email"]
    ]
    assert message_log(store, trigger="nope").empty


def test_explain_is_a_dry_run(world):
    store, eng = world
    before = store.count("messages"), store.count("trigger_timers")
    got = explain(eng, "abandoned_cart", "p1", at(41))
    assert [j["state"] for j in got["journeys"]] == ["done"]
    # e5 is within the 1-day reentry of e1, so no journey started; it would start without one
    assert got["would_start"] == [
        "add_to_cart at 2026-01-05T12:00:00",
        "add_to_cart at 2026-01-05T12:39:00",
    ]
    assert got["decisions_now"] == [
        {
            "step": 2,
            "channel": "email",
            "decision": "capped",
            "reason": "1 email message(s) in the last 16h (cap 1)",
        }
    ]
    assert (
        explain(eng, "abandoned_cart", "p2", at(41))["decisions_now"][0]["decision"] == "no_consent"
    )
    assert (store.count("messages"), store.count("trigger_timers")) == before
    with pytest.raises(NotFoundError, match="no trigger named 'x' \\(triggers: abandoned_cart\\)"):
        explain(eng, "x", "p1", at(41))


def test_catalog_changes_since(world):
    import pandas as pd
    from cip.activation.triggers import catalog_changes_since, record_catalog

    store, _ = world
    snap = pd.DataFrame({"item_id": ["a"], "price": [10.0], "in_stock": [True]})
    record_catalog(store, snap, at(0))
    record_catalog(store, snap.assign(price=5.0), at(60))
    assert catalog_changes_since(store, at(0))[["item_id", "kind", "pct"]].values.tolist() == [
        ["a", "price_drop", 50.0]
    ]
    assert len(catalog_changes_since(store, at(-1))) == 2
