"""The trigger engine on hand-made event sequences: fires, unless, caps, quiet hours, consent,
control groups, journeys and idempotency (DuckDB; the core paths on PostgreSQL too)."""

from __future__ import annotations

import json

import pytest
from _triggers_world import (
    CART,
    NO_QUIET,
    SECRET,
    add_profiles,
    at,
    engine,
    events,
    messages,
    rows,
    timers,
)
from cip.activation.policy import PolicyConfig, QuietHours, control_bucket
from cip.activation.triggers import message_id
from cip.profiles.store import open_store


@pytest.fixture
def store():
    with open_store("duckdb") as s:
        yield s


def test_abandoned_cart_fires_after_the_wait_with_the_carts_items(any_store):
    add_profiles(any_store, [{"uid": "p1"}])
    eng = engine(any_store, [CART])
    batch = events(
        ("e1", "p1", "add_to_cart", at(0), "sku-1"),
        ("e2", "p1", "add_to_cart", at(2), "sku-2"),
        ("e3", "p1", "remove_from_cart", at(3), "sku-2"),
        ("e4", "p1", "add_to_cart", at(4), "sku-3"),
    )
    first = eng.process(at(5), events=batch)
    assert (first.events, first.events_new, first.started) == (4, 4, 1)  # one journey (reentry)
    assert messages(any_store).empty
    assert eng.process(at(29)).decisions == {}  # not yet due
    report = eng.process(at(31))
    assert report.decisions == {"sent": 1}
    (m,) = messages(any_store).to_dict("records")
    assert m["message_id"] == message_id("abandoned_cart", "p1", "event:e1", 2)
    assert (m["decision"], bool(m["control"]), m["channel"], m["reason"]) == (
        "sent",
        False,
        "email",
        "eligible",
    )
    assert [(i["item_id"], i["block"]) for i in json.loads(m["items"])] == [
        ("sku-3", "cart"),
        ("sku-1", "cart"),
    ]
    (t,) = timers(any_store).to_dict("records")
    assert (t["state"], t["step"]) == ("done", 3)


def test_unless_cancels_the_journey(store):
    add_profiles(store, [{"uid": "p1"}, {"uid": "p2"}])
    eng = engine(store, [CART])
    eng.process(
        at(1),
        events=events(
            ("e1", "p1", "add_to_cart", at(0), "sku-1"),
            ("e2", "p2", "add_to_cart", at(0), "sku-1"),
        ),
    )
    # p2 checks out 10 minutes later, in a later batch
    eng.process(at(12), events=events(("e3", "p2", "checkout", at(10))))
    report = eng.process(at(40))
    assert report.cancelled == 1 and report.decisions == {"sent": 1}
    assert messages(store)["unified_id"].tolist() == ["p1"]
    t = timers(store).set_index("unified_id")
    assert t.loc["p2", "state"] == "cancelled"
    assert t.loc["p2", "reason"] == "unless: checkout at 2026-01-05T12:10:00"


def test_cap_across_triggers(store):
    add_profiles(store, [{"uid": "p1"}])
    browse = {"name": "browse", "when": {"event": "product_view"}, "wait": "1h"}
    eng = engine(store, [CART, browse])
    eng.process(
        at(1),
        events=events(
            ("e1", "p1", "add_to_cart", at(0), "sku-1"),
            ("e2", "p1", "product_view", at(0), "sku-9"),
        ),
    )
    assert eng.process(at(31)).decisions == {"sent": 1}
    report = eng.process(at(61))
    assert report.decisions == {"capped": 1}
    capped = messages(store).set_index("trigger").loc["browse"]
    assert capped["decision"] == "capped"
    assert capped["reason"] == "1 email message(s) in the last 16h (cap 1)"


def test_quiet_hours_defer_the_message_not_drop_it(any_store):
    add_profiles(any_store, [{"uid": "p1", "timezone": "Europe/London"}])
    pol = PolicyConfig(timezone="UTC", quiet_hours=QuietHours(start="21:00", end="08:00"))
    eng = engine(any_store, [CART], policy=pol)
    cart_at = at(hours=9, minutes=50)  # 21:50 London
    eng.process(cart_at, events=events(("e1", "p1", "add_to_cart", cart_at, "sku-1")))
    report = eng.process(at(hours=10, minutes=30))  # due 22:20: quiet
    assert report.decisions == {"deferred": 1}
    (m,) = messages(any_store).to_dict("records")
    morning = at(hours=20)  # 08:00 the next day
    assert m["decision"] == "deferred" and m["deferred_until"] == morning
    assert eng.process(at(hours=19)).decisions == {}  # still night
    assert eng.process(morning).decisions == {"sent": 1}
    (m2,) = messages(any_store).to_dict("records")  # the same message, now decided
    assert (m2["message_id"], m2["decision"], m2["decided_at"]) == (
        m["message_id"],
        "sent",
        morning,
    )
    assert m2["deferred_until"] == morning  # the deferral stays on record


def test_no_consent_and_no_profile(store):
    add_profiles(store, [{"uid": "p1", "consent": {"sms"}}])
    eng = engine(store, [CART])
    eng.process(
        at(1),
        events=events(
            ("e1", "p1", "add_to_cart", at(0), "sku-1"),
            ("e2", "anon", "add_to_cart", at(0), "sku-1"),
        ),
    )
    assert eng.process(at(31)).decisions == {"no_consent": 2}
    reasons = dict(zip(messages(store)["unified_id"], messages(store)["reason"], strict=True))
    assert reasons == {
        "p1": "no consent for email",
        "anon": "no profile for the person (no consent statement)",
    }


def test_control_group_is_held_out_and_recorded(store):
    people = [f"p{i}" for i in range(200)]
    add_profiles(store, [{"uid": u} for u in people])
    eng = engine(store, [{**CART, "control_pct": 25}])
    batch = events(*[(f"e{i}", u, "add_to_cart", at(0), "sku-1") for i, u in enumerate(people)])
    eng.process(at(1), events=batch)
    eng.process(at(31))
    m = messages(store).set_index("unified_id")
    expected = {u for u in people if control_bucket(SECRET, u, "trigger:abandoned_cart") < 25}
    assert set(m.index[m["decision"] == "held_out"]) == expected
    assert (
        m.loc[sorted(expected), "control"].all()
        and not m.loc[m["decision"] == "sent", "control"].any()
    )
    assert 30 <= len(expected) <= 70
    assert set(m["decision"]) == {"sent", "held_out"}


def test_two_step_journey(store):
    add_profiles(store, [{"uid": "a"}, {"uid": "b"}])
    welcome = {
        "name": "welcome",
        "when": {"event": "signup"},
        "reentry": "never",
        "steps": [
            {"send": {}},
            {"wait": "2d"},
            {"unless": {"event": "purchase"}},
            {"send": {"channel": "sms"}},
        ],
    }
    eng = engine(store, [welcome])
    r = eng.process(
        at(0), events=events(("s1", "a", "signup", at(0)), ("s2", "b", "signup", at(0)))
    )
    assert r.decisions == {"sent": 2}  # the first send goes at once
    eng.process(at(days=1), events=events(("o1", "b", "purchase", at(days=1), "sku-1")))
    r = eng.process(at(days=2, minutes=1))
    assert r.decisions == {"sent": 1} and r.cancelled == 1
    m = messages(store)
    assert sorted(zip(m["unified_id"], m["step"], m["channel"], strict=True)) == [
        ("a", 0, "email"),
        ("a", 3, "sms"),
        ("b", 0, "email"),
    ]
    # a second signup never starts another welcome (reentry: never)
    eng.process(at(days=5), events=events(("s3", "a", "signup", at(days=5))))
    assert len(messages(store)) == 3


def test_same_batch_twice_gives_the_same_messages(any_store):
    add_profiles(any_store, [{"uid": "p1"}, {"uid": "p2"}, {"uid": "p3", "consent": set()}])
    batch = events(
        ("e1", "p1", "add_to_cart", at(0), "sku-1"),
        ("e2", "p2", "add_to_cart", at(0), "sku-2"),
        ("e3", "p3", "add_to_cart", at(0), "sku-3"),
        ("e4", "p2", "purchase", at(20), "sku-2"),
    )
    eng = engine(any_store, [CART])
    eng.process(at(40), events=batch)
    first_m, first_t = rows(messages(any_store)), rows(timers(any_store))
    assert len(first_m) == 2
    again = eng.process(at(40), events=batch)
    assert (again.events_new, again.started, again.decisions) == (0, 0, {})
    later = engine(any_store, [CART]).process(at(90), events=batch)  # a fresh worker, later
    assert (later.started, later.decisions) == (0, {})
    assert rows(messages(any_store)) == first_m and rows(timers(any_store)) == first_t


def test_crash_between_timers_sends_nothing_twice(store):
    add_profiles(store, [{"uid": f"p{i}"} for i in range(6)])
    calls = []

    def flaky(request):
        calls.append(request.unified_id)
        if len(calls) == 4:
            raise RuntimeError("worker killed")
        from cip.activation.triggers import ContentResult

        return ContentResult([{"item_id": "rec-1", "score": 0.9}], {"recommender": "v3"})

    cart = {**CART, "content": {"cart": True, "recommend": 1}}
    batch = events(*[(f"e{i}", f"p{i}", "add_to_cart", at(0), "sku-1") for i in range(6)])
    eng = engine(store, [cart], content=flaky, chunk_size=3)
    with pytest.raises(RuntimeError, match="worker killed"):
        eng.process(at(31), events=batch)
    done = rows(messages(store))
    assert len(done) == 3  # the first chunk committed; the chunk of the crash rolled back
    report = engine(store, [cart], content=flaky).process(at(32), events=batch)
    assert report.decisions == {"sent": 3}
    m = messages(store)
    assert len(m) == 6 and m["message_id"].is_unique
    assert rows(m)[:3] == done  # what was decided before the crash is untouched
    assert json.loads(m["items"].iloc[5])[-1] == {
        "item_id": "rec-1",
        "score": 0.9,
        "block": "recommend",
    }


def test_content_unavailable_waits_and_retries(store):
    from cip.activation.triggers import ContentResult, ContentUnavailable

    add_profiles(store, [{"uid": "p1"}])
    up = {"ok": False}

    def service(request):
        if not up["ok"]:
            raise ContentUnavailable("503 from /recommend")
        assert request.context_items == ["sku-1"] and request.n == 4
        return ContentResult([{"item_id": f"r{i}"} for i in range(6)], {"recommender": "v7"})

    eng = engine(store, [{**CART, "content": {"cart": True, "recommend": 4}}], content=service)
    eng.process(at(1), events=events(("e1", "p1", "add_to_cart", at(0), "sku-1")))
    r = eng.process(at(31))
    assert r.retried == 1 and r.decisions == {} and messages(store).empty
    (t,) = timers(store).to_dict("records")
    assert t["state"] == "waiting" and t["due_at"] == at(36)
    assert t["reason"] == "content unavailable: 503 from /recommend"
    up["ok"] = True
    assert eng.process(at(36)).decisions == {"sent": 1}
    items = json.loads(messages(store)["items"].iloc[0])
    assert [i["block"] for i in items] == ["cart"] + ["recommend"] * 4
    versions = store.sql("SELECT model_versions FROM messages")["model_versions"].iloc[0]
    assert json.loads(versions) == {"recommender": "v7"}


def test_old_events_never_fire_and_property_filters(store):
    add_profiles(store, [{"uid": "p1"}, {"uid": "p2"}])
    shoes = {
        "name": "shoes_cart",
        "when": {"event": "add_to_cart", "properties": {"category": ["shoes", "boots"]}},
        "wait": "30m",
    }
    eng = engine(store, [shoes])
    r = eng.process(
        at(days=3),
        events=events(
            ("old", "p1", "add_to_cart", at(0), "sku-1", {"category": "shoes"}),  # 3 days old
            ("new", "p1", "add_to_cart", at(days=3), "sku-2", {"category": "boots"}),
            ("hat", "p2", "add_to_cart", at(days=3), "sku-3", {"category": "hats"}),
        ),
    )
    assert r.started == 1
    assert timers(store)["window_key"].tolist() == ["event:new"]


def test_reentry_spaces_journeys(store):
    add_profiles(store, [{"uid": "p1"}])
    eng = engine(
        store, [CART], policy=PolicyConfig(quiet_hours=None, channels={"email": {"cap": None}})
    )
    eng.process(at(5), events=events(("e1", "p1", "add_to_cart", at(0), "a")))
    eng.process(at(40), events=events(("e2", "p1", "add_to_cart", at(35), "b")))  # < 1d later
    eng.process(at(days=2), events=events(("e3", "p1", "add_to_cart", at(days=2), "c")))
    eng.process(at(days=2, minutes=31))
    assert timers(store)["window_key"].tolist() == ["event:e1", "event:e3"]
    assert messages(store)["decision"].tolist() == ["sent", "sent"]


def test_segment_score_and_prediction_sources(store):
    import pandas as pd

    add_profiles(store, [{"uid": u} for u in ("a", "b", "c", "d")])
    trig = [
        {"name": "at_risk", "when": {"segment": "at_risk", "change": "entered"}, "channel": "push"},
        {"name": "churny", "when": {"score": "churn_probability", "above": 0.7}, "channel": "sms"},
        {
            "name": "refill",
            "when": {"predicted": "next_order_due", "within_days": 2},
            "channel": "webhook",
            "destination": "crm",
        },
    ]
    from cip.activation.triggers import TriggerEngine, validate_triggers

    eng = TriggerEngine(
        store,
        validate_triggers(trig, {"crm": {"url": "https://crm.example"}}),
        secret=SECRET,
        policy=NO_QUIET,
    )
    seg = pd.DataFrame(
        {
            "segment": ["at_risk", "at_risk", "vip"],
            "unified_id": ["a", "b", "c"],
            "as_of": [at(0)] * 3,
            "change": ["entered", "exited", "entered"],
        }
    )
    scores = pd.DataFrame(
        {
            "unified_id": ["a", "b", "c"],
            "name": ["churn_probability"] * 3,
            "as_of": [at(0)] * 3,
            "score": [0.9, 0.8, 0.5],
            "previous": [0.5, 0.75, None],  # b was already above: no crossing
        }
    )
    preds = pd.DataFrame(
        {"unified_id": ["c", "d"], "as_of": [at(0)] * 2, "next_order_at": [at(days=1), at(days=9)]}
    )
    r = eng.process(at(1), segment_changes=seg, scores=scores, predictions=preds)
    assert r.started == 3 and r.decisions == {"sent": 3}
    got = sorted(zip(messages(store)["trigger"], messages(store)["unified_id"], strict=True))
    assert got == [("at_risk", "a"), ("churny", "a"), ("refill", "c")]
    assert store.sql("SELECT destination FROM messages WHERE \"trigger\" = 'refill'")[
        "destination"
    ].tolist() == ["crm"]


def test_suppression_list_and_erasure(store):
    from cip.activation.triggers import add_suppression
    from cip.profiles.privacy import add_tombstones, hash_identifier

    add_profiles(store, [{"uid": "p1"}, {"uid": "p2"}, {"uid": "p3"}])
    assert add_suppression(
        store, "email", "email", " P1@Example.com ", salt=SECRET, reason="bounced"
    )
    assert not add_suppression(store, "email", "email", "p1@example.com", salt=SECRET)
    add_tombstones(store, [("email", hash_identifier("email", "p2@example.com", SECRET))])
    eng = engine(store, [CART])
    batch = events(*[(f"e{u}", u, "add_to_cart", at(0), "sku-1") for u in ("p1", "p2", "p3")])
    eng.process(at(31), events=batch)
    m = messages(store).set_index("unified_id")
    assert m.loc["p1", "decision"] == "suppressed" and "suppression list" in m.loc["p1", "reason"]
    assert (m.loc["p2", "decision"], m.loc["p2", "reason"]) == ("suppressed", "person erased")
    assert m.loc["p3", "decision"] == "sent"


def test_erasure_reaches_the_trigger_tables_and_late_events(store):
    from cip.profiles.erasure import erase_persons

    add_profiles(store, [{"uid": "p1"}, {"uid": "p2"}])
    eng = engine(store, [CART])
    batch = events(("e1", "p1", "add_to_cart", at(0), "s"), ("e2", "p2", "add_to_cart", at(0), "s"))
    eng.process(at(31), events=batch)
    report = erase_persons(store, unified_ids=["p1"], salt=SECRET)
    assert {
        t: report.rows_deleted[t] for t in ("messages", "trigger_events", "trigger_timers")
    } == {
        "messages": 1,
        "trigger_events": 1,
        "trigger_timers": 1,
    }
    for table in ("messages", "trigger_events", "trigger_timers"):
        assert store.sql(f"SELECT DISTINCT unified_id FROM {table}")["unified_id"].tolist() == [
            "p2"
        ]
    # the erased person's events arriving late (a replayed stream) are dropped
    late = eng.process(at(days=3), events=events(("e9", "p1", "add_to_cart", at(days=3), "s")))
    assert (late.events, late.events_new, late.started) == (1, 0, 0)
    assert (
        store.sql("SELECT count(*) AS n FROM trigger_events WHERE unified_id = 'p1'")["n"][0] == 0
    )


def test_normalise_events_handles_concatenated_batches_and_missing_ids():
    import pandas as pd
    from cip.activation.triggers import normalise_events

    a = events(("e1", "p1", "add_to_cart", at(0), "s"))
    b = events((None, "p2", "add_to_cart", at(1), "s"), ("e3", None, "page_view", at(2)))
    ev = normalise_events(pd.concat([a, b, a]))  # repeated index labels, a duplicate event
    assert ev["unified_id"].tolist() == ["p1", "p2"]  # no person: dropped; duplicate: once
    assert ev["event_id"].iloc[0] == "e1" and len(ev["event_id"].iloc[1]) == 32  # content hash
    again = normalise_events(b)
    assert again["event_id"].tolist() == [ev["event_id"].iloc[1]]  # the hash is stable
