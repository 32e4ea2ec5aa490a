"""``channel: best`` and ``send_at: best`` (issue M) on hand-made responses.

Four persons answered messages (or not) before the trigger fires:

* ``p1`` clicked all six SMS at 19:00 UTC and none of six e-mails: SMS, 19:00, their own;
* ``p2`` clicked one push only (too few responses): the shop's default;
* ``p3`` answers like ``p1`` but gave no SMS consent: the next channel they allow;
* ``p4`` consented to nothing: refused, the reason naming the channels tried.

The shop: SMS answered best (12 of 12), then push (1 of 2), e-mail never; its most
common responding hour is 19:00.
"""

from __future__ import annotations

import datetime as dt
from typing import get_args

import pandas as pd
import pytest
from _triggers_world import NO_QUIET, T0, add_profiles, at, engine, events, messages
from cip.activation.measure import best_channel_and_hour, load_preferences, write_preferences
from cip.activation.policy import PolicyConfig, QuietHours
from cip.activation.triggers import validate_triggers
from cip.activation.triggers.definitions import CHANNELS, SendChannel
from cip.profiles.errors import ConfigError
from cip.profiles.store import open_store

BEST = {"name": "cart", "when": {"event": "add_to_cart"}, "wait": "30m", "channel": "best"}
LATER = {**BEST, "channel": "email", "send_at": "best"}


def _history() -> pd.DataFrame:
    rows = []
    day0 = pd.Timestamp(T0).normalize() - pd.Timedelta(days=20)
    for uid in ("p1", "p3"):
        for i in range(6):
            ts = day0 + pd.Timedelta(days=i, hours=19)
            for ch in ("email", "sms"):
                rows.append((uid, f"{uid}-{ch}{i}", ch, "send", ts))
                if ch == "sms":
                    rows.append((uid, f"{uid}-{ch}{i}", ch, "click", ts + pd.Timedelta(minutes=3)))
    t = day0 + pd.Timedelta(hours=10)
    rows += [
        ("p2", "p2-a", "push", "send", t), ("p2", "p2-a", "push", "click", t),
        ("p2", "p2-b", "push", "send", t), ("p2", "p2-c", "email", "send", t),
        ("p4", "p4-a", "email", "send", t),
    ]  # fmt: skip
    return pd.DataFrame(
        rows, columns=["unified_id", "message_id", "channel", "event_type", "ts"]
    ).assign(machine=False)


@pytest.fixture
def store():
    with open_store("duckdb") as s:
        add_profiles(
            s,
            [
                {"uid": "p1"},
                {"uid": "p2"},
                {"uid": "p3", "consent": {"email", "push"}},
                {"uid": "p4", "consent": set()},
                {"uid": "p5"},  # never messaged: no row of their own
            ],
        )
        yield s


def _prefs(store) -> None:
    assert write_preferences(store, best_channel_and_hour(_history())) == 4


def _fire(store, trig, *, policy=NO_QUIET, uids=("p1", "p2", "p3", "p4", "p5"), when=None):
    eng = engine(store, [trig], policy=policy)
    start = when or at(0)
    eng.process(start, events=events(*((f"e-{u}", u, "add_to_cart", start) for u in uids)))
    return eng


def test_preferences_are_stored_with_rankings_and_the_shop_default(any_store) -> None:
    store = any_store  # DuckDB and PostgreSQL
    _prefs(store)
    prefs, shop = load_preferences(store, ["p1", "p2", "p3", "p5"])
    assert sorted(prefs) == ["p1", "p2", "p3"]  # p5 never messaged
    assert (prefs["p1"].channel, prefs["p1"].hour, prefs["p1"].basis) == ("sms", 19, "person")
    assert prefs["p1"].ranking == ("sms", "push", "email")
    assert (prefs["p2"].channel, prefs["p2"].basis) == ("sms", "default")
    assert shop is not None and (shop.channel, shop.hour, shop.basis) == ("sms", 19, "shop")
    assert shop.ranking == ("sms", "push", "email")
    _prefs(store)  # written again: replaced, not appended
    assert store.sql("SELECT count(*) AS n FROM channel_preferences")["n"].iloc[0] == 5


def test_channel_best_picks_the_persons_channel_the_default_or_the_next_allowed(store) -> None:
    _prefs(store)
    eng = _fire(store, BEST)
    assert eng.process(at(31)).decisions == {"sent": 4, "no_consent": 1}
    m = messages(store).set_index("unified_id")
    assert m.loc["p1", ["channel", "decision"]].tolist() == ["sms", "sent"]
    assert m.loc["p1", "reason"] == "eligible; best channel sms (person)"
    # too few responses of their own: the shop's default
    assert m.loc["p2", ["channel", "decision"]].tolist() == ["sms", "sent"]
    assert m.loc["p2", "reason"].endswith("best channel sms (shop default)")
    assert m.loc["p5", "channel"] == "sms"  # no row at all: the shop's default too
    # p3 would rather have SMS but did not consent to it: the next in their order
    assert m.loc["p3", ["channel", "decision"]].tolist() == ["push", "sent"]
    assert m.loc["p3", "reason"].endswith("fallback push (sms not allowed; person)")
    assert m.loc["p4", "decision"] == "no_consent"
    assert m.loc["p4", "reason"] == (
        "no consent for sms; channel best: no allowed channel among sms, push, email"
    )


def test_channel_best_without_preferences_follows_the_triggers_channels(store) -> None:
    trig = {**BEST, "channels": ["push", "email"]}
    _fire(store, trig, uids=("p1", "p3"))
    engine(store, [trig]).process(at(31))
    m = messages(store).set_index("unified_id")
    assert m["channel"].to_dict() == {"p1": "push", "p3": "push"}
    assert m.loc["p1", "reason"].endswith("best channel push (no preferences)")


def test_channel_best_respects_the_frequency_cap_of_the_chosen_channel(store) -> None:
    _prefs(store)
    trig = {**BEST, "reentry": "1m"}
    eng = _fire(store, trig, uids=("p1",))
    eng.process(at(31))
    eng.process(at(40), events=events(("e2", "p1", "add_to_cart", at(40))))
    assert eng.process(at(71)).decisions == {"capped": 1}  # one SMS per 24 h
    assert messages(store)["channel"].tolist() == ["sms", "sms"]


def test_send_at_best_defers_to_the_best_hour_then_sends(store) -> None:
    _prefs(store)
    eng = _fire(store, LATER, uids=("p1", "p2"))
    assert eng.process(at(31)).decisions == {"deferred": 2}
    m = messages(store).set_index("unified_id")
    seven = dt.datetime.combine(T0.date(), dt.time(19, 0))
    assert pd.Timestamp(m.loc["p1", "deferred_until"]) == seven  # their own hour
    assert pd.Timestamp(m.loc["p2", "deferred_until"]) == seven  # the shop's hour
    assert m.loc["p1", "reason"] == "send_at best: 19:00 UTC"
    assert eng.process(at(hours=6)).decisions == {}  # not yet
    assert eng.process(seven).decisions == {"sent": 2}
    m = messages(store)
    assert m["decision"].tolist() == ["sent", "sent"] and set(m["channel"]) == {"email"}


def test_send_at_best_sends_now_at_the_best_hour_or_when_it_is_quiet(store) -> None:
    _prefs(store)
    # already 19:00: no wait
    nineteen = dt.datetime.combine(T0.date(), dt.time(18, 20))
    eng = _fire(store, LATER, uids=("p1",), when=nineteen)
    assert eng.process(nineteen + dt.timedelta(minutes=40)).decisions == {"sent": 1}
    # quiet hours from 18:00: the best hour is never aimed into, the message goes now
    quiet = PolicyConfig(quiet_hours=QuietHours(start=dt.time(18, 0), end=dt.time(8, 0)))
    eng = _fire(store, LATER, uids=("p2",), policy=quiet)
    assert eng.process(at(31)).decisions == {"sent": 1}


def test_send_at_best_without_any_hour_sends_now(store) -> None:
    eng = _fire(store, LATER, uids=("p1",))  # no preferences stored
    assert eng.process(at(31)).decisions == {"sent": 1}


def test_definitions_accept_best_and_reject_bad_channel_lists() -> None:
    assert set(get_args(SendChannel)) == {*CHANNELS, "best"}  # one list of channels, plus best
    (t,) = validate_triggers(
        [{**BEST, "send_at": "best", "steps": [{"send": {}}, {"wait": "1d"},
                                               {"send": {"channel": "sms", "send_at": "now"}}],
          "wait": None}]
    )  # fmt: skip
    sends = [s.send for s in t.plan() if hasattr(s, "send")]
    assert [(s.channel, s.send_at) for s in sends] == [("best", "best"), ("sms", "now")]
    with pytest.raises(ConfigError, match="channels"):
        validate_triggers([{**BEST, "channels": ["webhook"]}])
    with pytest.raises(ConfigError, match="at most once"):
        validate_triggers([{**BEST, "channels": ["sms", "sms"]}])
    with pytest.raises(ConfigError, match="send_at"):
        validate_triggers([{**BEST, "send_at": "later"}])
