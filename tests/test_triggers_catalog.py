"""Versioned catalog (price and stock changes as facts) and the catalog triggers."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _triggers_world import add_profiles, at, engine, events, messages, timers
from cip.activation.triggers import current_catalog, diff_catalog, record_catalog
from cip.profiles.errors import DataError
from cip.profiles.store import open_store


def catalog(*rows):
    return pd.DataFrame(rows, columns=["item_id", "title", "category", "price", "in_stock"])


BEFORE = catalog(
    ("sku-1", "Boots", "shoes", 100.0, True),
    ("sku-2", "Hat", "hats", 20.0, False),
    ("sku-3", "Scarf", "hats", 30.0, True),
    ("sku-4", "Belt", "acc", 10.0, True),
)
AFTER = catalog(
    ("sku-1", "Boots", "shoes", 85.0, True),  # -15 %
    ("sku-2", "Hat", "hats", 18.0, True),  # back in stock and -10 %
    ("sku-3", "Scarf", "hats", 33.0, False),  # dearer and out of stock
    ("sku-5", "Socks", "shoes", 5.0, True),  # new; sku-4 removed
)


def test_diff_catalog_names_every_change():
    ch = diff_catalog(BEFORE, AFTER, at(0))
    got = {(r.item_id, r.kind): r for r in ch.itertuples()}
    assert sorted(got) == [
        ("sku-1", "price_drop"),
        ("sku-2", "back_in_stock"),
        ("sku-2", "price_drop"),
        ("sku-3", "out_of_stock"),
        ("sku-3", "price_rise"),
        ("sku-4", "removed"),
        ("sku-5", "new"),
    ]
    drop = got[("sku-1", "price_drop")]
    assert (drop.old_price, drop.new_price, drop.pct) == (100.0, 85.0, 15.0)
    assert got[("sku-3", "price_rise")].pct == pytest.approx(-10.0)
    assert (ch["ts"] == pd.Timestamp(at(0))).all()
    assert diff_catalog(AFTER, AFTER, at(1)).empty


def test_unknown_values_make_no_change_and_bad_snapshots_are_refused():
    a = catalog(("x", "X", None, None, None), ("y", "Y", None, 10.0, True))
    b = catalog(("x", "X", None, 5.0, True), ("y", "Y", None, None, None))
    assert diff_catalog(a, b, at(0)).empty
    with pytest.raises(DataError, match="item_id 'x' appears more than once"):
        diff_catalog(a, pd.concat([b, b]), at(0))


def test_record_catalog_versions_products(any_store):
    assert len(record_catalog(any_store, BEFORE, at(0))) == 4  # all new
    changes = record_catalog(any_store, AFTER, at(days=1))
    assert len(changes) == 7
    assert record_catalog(any_store, AFTER, at(days=2)).empty  # same snapshot: nothing
    hist = any_store.sql(
        "SELECT item_id, price, valid_from, valid_to FROM product_history ORDER BY item_id, valid_from"
    )
    one = hist[hist["item_id"] == "sku-1"]
    assert one["price"].tolist() == [100.0, 85.0]
    assert one["valid_to"].iloc[0] == pd.Timestamp(at(days=1)) and pd.isna(one["valid_to"].iloc[1])
    assert pd.notna(hist.loc[hist["item_id"] == "sku-4", "valid_to"]).all()  # removed: closed
    cur = current_catalog(any_store)
    assert cur["item_id"].tolist() == ["sku-1", "sku-2", "sku-3", "sku-5"]
    assert any_store.count("product_changes") == 11
    with pytest.raises(DataError, match="older than the history"):
        record_catalog(any_store, BEFORE, at(0))


PRICE_DROP = {
    "name": "price_drop",
    "when": {"catalog": "price_drop", "min_pct": 10, "lookback_days": 30},
}


def test_price_drop_fires_for_the_carter_not_the_buyer(any_store):
    add_profiles(any_store, [{"uid": u} for u in ("carter", "buyer", "viewer_old", "other")])
    eng = engine(any_store, [PRICE_DROP])
    record_catalog(any_store, BEFORE, at(days=-60))
    eng.process(
        at(0),
        events=events(
            ("v0", "viewer_old", "product_view", at(days=-40), "sku-1"),  # outside lookback
            ("c1", "carter", "add_to_cart", at(days=-3), "sku-1"),
            ("c2", "buyer", "add_to_cart", at(days=-3), "sku-1"),
            ("p2", "buyer", "purchase", at(days=-2), "sku-1"),
            ("c3", "other", "add_to_cart", at(days=-3), "sku-4"),
        ),
    )
    changes = record_catalog(any_store, AFTER, at(0))
    report = eng.process(at(1), catalog_changes=changes)
    assert report.started == 1 and report.decisions == {"sent": 1}
    (m,) = messages(any_store).to_dict("records")
    assert (m["unified_id"], m["window_key"]) == (
        "carter",
        f"price_drop:sku-1:{pd.Timestamp(at(0)).isoformat()}",
    )
    (item,) = json.loads(m["items"])
    assert item == {
        "item_id": "sku-1",
        "block": "item",
        "title": "Boots",
        "category": "shoes",
        "price": 85.0,
        "in_stock": True,
    }
    # the same changes again start nothing
    assert eng.process(at(2), catalog_changes=changes).started == 0


def test_small_drop_and_back_in_stock(store):
    add_profiles(store, [{"uid": "fan"}, {"uid": "watcher"}])
    big = {**PRICE_DROP, "when": {"catalog": "price_drop", "min_pct": 12}}
    stock = {"name": "restock", "when": {"catalog": "back_in_stock"}, "channel": "push"}
    eng = engine(store, [big, stock])
    record_catalog(store, BEFORE, at(days=-10))
    eng.process(
        at(0),
        events=events(
            ("w1", "watcher", "add_to_wishlist", at(days=-1), "sku-2"),
            ("f1", "fan", "product_view", at(days=-1), "sku-2"),
        ),
    )
    eng.process(at(1), catalog_changes=record_catalog(store, AFTER, at(0)))
    m = messages(store)
    # sku-2 dropped 10 % (< 12 %): no price-drop message; back in stock: both interested persons
    assert sorted(zip(m["trigger"], m["unified_id"], strict=True)) == [
        ("restock", "fan"),
        ("restock", "watcher"),
    ]
    assert set(m["channel"]) == {"push"}


def test_purchase_after_the_change_cancels_before_the_wait_ends(store):
    add_profiles(store, [{"uid": "carter"}])
    waiting = {**PRICE_DROP, "wait": "2h"}
    eng = engine(store, [waiting])
    record_catalog(store, BEFORE, at(days=-10))
    eng.process(at(0), events=events(("c1", "carter", "add_to_cart", at(days=-1), "sku-1")))
    eng.process(at(1), catalog_changes=record_catalog(store, AFTER, at(0)))
    eng.process(at(30), events=events(("b1", "carter", "purchase", at(30), "sku-1")))
    r = eng.process(at(hours=3))
    assert r.cancelled == 1 and messages(store).empty
    assert timers(store)["reason"].tolist() == ["bought sku-1 since the interest"]


@pytest.fixture
def store():
    with open_store("duckdb") as s:
        yield s


def test_ingested_products_and_events_feed_the_engine(store):
    """The canonical tables as ingest leaves them: products snapshots and raw events/order lines."""
    from cip.activation.triggers import events_from_store, snapshot_catalog

    def products(rows, ingested):
        for item, price, stock in rows:
            store.execute(
                "INSERT INTO products (source, record_id, ingested_at, item_id, title, price, "
                "in_stock) VALUES ('shop', ?, ?, ?, ?, ?, ?)",
                [f"{item}-{ingested}", ingested, item, item.title(), price, stock],
            )

    products([("sku-1", 100.0, True), ("sku-2", 50.0, True)], at(days=-5))
    assert len(snapshot_catalog(store, at(days=-5))) == 2
    store.execute(
        "INSERT INTO events (source, record_id, ingested_at, event_id, ts, event_type, "
        "customer_id, item_id) VALUES ('web', 'r1', ?, 'ev-1', ?, 'add_to_cart', 'c-carter', "
        "'sku-1'), ('web', 'r2', ?, NULL, ?, 'add_to_cart', 'c-buyer', 'sku-1')",
        [at(days=-2), at(days=-2), at(days=-2), at(days=-2)],
    )
    store.execute(
        "INSERT INTO order_lines (source, record_id, ingested_at, order_id, ts, customer_id, "
        "item_id, quantity, unit_price) VALUES ('shop', 'l1', ?, 'o1', ?, 'c-buyer', 'sku-1', "
        "1, 100)",
        [at(days=-1), at(days=-1)],
    )
    feed = events_from_store(store, at(days=-3), at(0))
    assert sorted(zip(feed["unified_id"], feed["event_type"], strict=True)) == [
        ("c-buyer", "add_to_cart"),
        ("c-buyer", "purchase"),
        ("c-carter", "add_to_cart"),
    ]
    assert "ev-1" in set(feed["event_id"]) and feed["event_id"].is_unique
    add_profiles(store, [{"uid": "c-carter"}, {"uid": "c-buyer"}])
    eng = engine(store, [PRICE_DROP])
    eng.process(at(0), events=feed)
    products([("sku-1", 80.0, True), ("sku-2", 50.0, True)], at(0))
    changes = snapshot_catalog(store, at(0))
    assert changes[["item_id", "kind"]].values.tolist() == [["sku-1", "price_drop"]]
    eng.process(at(1), catalog_changes=changes)
    assert messages(store)["unified_id"].tolist() == ["c-carter"]


def test_events_from_store_resolve_persons_through_record_map(store):
    from cip.activation.triggers import events_from_store

    store.execute(
        "INSERT INTO events (source, record_id, ingested_at, event_id, ts, event_type, email, "
        "item_id) VALUES ('web', 'r1', ?, 'ev-1', ?, 'product_view', 'a@x.com', 'sku-1'), "
        "('web', 'r2', ?, 'ev-2', ?, 'product_view', 'nobody@x.com', 'sku-1')",
        [at(0), at(0), at(0), at(0)],
    )
    store.execute(
        "INSERT INTO order_lines (source, record_id, ingested_at, order_id, ts, email, item_id, "
        "quantity, unit_price, status) VALUES ('shop', 'l1', ?, 'o1', ?, 'a@x.com', 'sku-1', 1, "
        "9, 'completed'), ('shop', 'l2', ?, 'o2', ?, 'a@x.com', 'sku-2', 1, 9, 'cancelled')",
        [at(1), at(1), at(1), at(1)],
    )
    store.execute(
        "CREATE TABLE record_map (source_table VARCHAR, record_id VARCHAR, unified_id VARCHAR)"
    )
    store.execute(
        "INSERT INTO record_map VALUES ('events', 'r1', 'U1'), "
        "('orders', md5('shop:order_lines:o1'), 'U1'), ('orders', md5('shop:order_lines:o2'), 'U1')"
    )
    feed = events_from_store(store, at(-1), at(5))
    # the unresolved event has no person; the cancelled line is no purchase
    assert feed[["unified_id", "event_type", "item_id"]].values.tolist() == [
        ["U1", "product_view", "sku-1"],
        ["U1", "purchase", "sku-1"],
    ]
