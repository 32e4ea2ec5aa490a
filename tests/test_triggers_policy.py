"""The messaging policy as a pure function: hand-made persons, sends and clocks."""

from __future__ import annotations

import datetime as dt

import pytest
from cip.activation.policy import (
    ChannelPolicy,
    MessageRequest,
    PersonState,
    PolicyConfig,
    QuietHours,
    control_bucket,
    decide,
    in_control,
    quiet_until,
)

SECRET = b"s" * 32
NOON = dt.datetime(2026, 3, 10, 12, 0)  # UTC
NO_QUIET = PolicyConfig(quiet_hours=None)


def person(uid="p1", **kw):
    base = {
        "consent": {"email": True, "sms": True, "push": True, "personalization": True},
        "contacts": {"email": "a@x.com", "phone": "+447700900001", "customer_id": "c1"},
    }
    return PersonState(unified_id=uid, **{**base, **kw})


def email(trigger="cart", pct=0.0, channel="email", purpose=None):
    return MessageRequest(trigger, channel, purpose or channel, pct)


def test_eligible_person_is_sent():
    d = decide(email(), person(), [], NOON, NO_QUIET, SECRET)
    assert (d.kind, d.control, d.deferred_until) == ("sent", False, None)


def test_erased_and_suppressed_come_first():
    assert decide(email(), person(erased=True), [], NOON, NO_QUIET, SECRET).kind == "suppressed"
    d = decide(email(), person(suppressed=frozenset({"email"})), [], NOON, NO_QUIET, SECRET)
    assert d.kind == "suppressed" and "email" in d.reason
    # suppressed on sms only: email still goes
    d = decide(email(), person(suppressed=frozenset({"sms"})), [], NOON, NO_QUIET, SECRET)
    assert d.kind == "sent"
    d = decide(email(), person(suppressed=frozenset({"*"})), [], NOON, NO_QUIET, SECRET)
    assert d.kind == "suppressed" and "all channels" in d.reason


@pytest.mark.parametrize("consent", [{}, {"email": False}, {"sms": True}])
def test_no_consent_for_the_purpose(consent):
    d = decide(email(), person(consent=consent), [], NOON, NO_QUIET, SECRET)
    assert d.kind == "no_consent" and d.reason == "no consent for email"


def test_unknown_person_has_no_consent():
    d = decide(email(), PersonState("ghost", known=False), [], NOON, NO_QUIET, SECRET)
    assert d.kind == "no_consent" and "no profile" in d.reason


def test_no_contact_for_the_channel():
    d = decide(
        email(channel="sms"), person(contacts={"email": "a@x.com"}), [], NOON, NO_QUIET, SECRET
    )
    assert d.kind == "no_contact" and d.reason == "no phone for channel sms"
    # a webhook needs no contact, only its purpose's consent
    hook = email(channel="webhook", purpose="personalization")
    assert decide(hook, person(contacts={}), [], NOON, NO_QUIET, SECRET).kind == "sent"


def test_control_groups_are_stable_keyed_and_near_their_share():
    ids = [f"person-{i}" for i in range(20_000)]
    held = [u for u in ids if in_control(SECRET, u, 10.0, "trigger:cart")]
    assert 0.09 < len(held) / len(ids) < 0.11
    # stable: the same answer every time; keyed: another secret gives another group
    assert held == [u for u in ids if in_control(SECRET, u, 10.0, "trigger:cart")]
    other = {u for u in ids if in_control(b"t" * 32, u, 10.0, "trigger:cart")}
    assert 0.05 < len(other & set(held)) / len(held) < 0.15
    # scopes are independent: the global group is not the trigger's group
    glob = {u for u in ids if in_control(SECRET, u, 10.0, "global")}
    assert len(glob & set(held)) < 0.15 * len(held)
    assert 0 <= control_bucket(SECRET, "x") < 100 and not in_control(SECRET, "x", 0.0)


def test_held_out_by_trigger_and_by_global_control():
    uid = next(
        f"u{i}"
        for i in range(1000)
        if control_bucket(SECRET, f"u{i}", "trigger:cart") < 10
        and control_bucket(SECRET, f"u{i}", "trigger:other") >= 10
    )
    d = decide(email(pct=10), person(uid), [], NOON, NO_QUIET, SECRET)
    assert d.kind == "held_out" and d.control and "control group of cart" in d.reason
    # each trigger draws its own group: the same person gets another trigger's message
    assert (
        decide(email(pct=10, trigger="other"), person(uid), [], NOON, NO_QUIET, SECRET).kind
        == "sent"
    )
    everyone = PolicyConfig(quiet_hours=None, control_pct=100)
    d = decide(email(), person(uid), [], NOON, everyone, SECRET)
    assert d.kind == "held_out" and "global control group" in d.reason
    # consent is checked before control: a person without consent is never "held out"
    d = decide(email(pct=100), person(uid, consent={}), [], NOON, NO_QUIET, SECRET)
    assert d.kind == "no_consent"


def test_frequency_cap_default_one_email_per_16_hours():
    p = person()
    sent_15h_ago = [NOON - dt.timedelta(hours=15)]
    d = decide(email(), p, sent_15h_ago, NOON, NO_QUIET, SECRET)
    assert d.kind == "capped" and d.reason == "1 email message(s) in the last 16h (cap 1)"
    assert (
        decide(email(), p, [NOON - dt.timedelta(hours=17)], NOON, NO_QUIET, SECRET).kind == "sent"
    )
    # caps are per channel: an sms is not capped by an email
    assert decide(email(channel="sms"), p, [], NOON, NO_QUIET, SECRET).kind == "sent"


def test_cap_is_configurable_per_channel():
    pol = PolicyConfig(quiet_hours=None, channels={"email": ChannelPolicy(cap=3, per="1d")})
    two = [NOON - dt.timedelta(hours=h) for h in (1, 5)]
    assert decide(email(), person(), two, NOON, pol, SECRET).kind == "sent"
    three = [*two, NOON - dt.timedelta(hours=20)]
    assert decide(email(), person(), three, NOON, pol, SECRET).kind == "capped"
    uncapped = PolicyConfig(quiet_hours=None, channels={"email": ChannelPolicy(cap=None)})
    assert decide(email(), person(), three * 5, NOON, uncapped, SECRET).kind == "sent"


def test_quiet_hours_defer_to_the_end_of_the_window_in_the_persons_zone():
    pol = PolicyConfig(timezone="Europe/London", quiet_hours=QuietHours(start="21:00", end="08:00"))
    late = dt.datetime(2026, 3, 10, 22, 30)  # 22:30 in London (GMT in March before DST)
    d = decide(email(), person(), [], late, pol, SECRET)
    assert d.kind == "deferred" and d.deferred_until == dt.datetime(2026, 3, 11, 8, 0)
    assert "Europe/London" in d.reason
    # the same instant is 17:30 in New York: not quiet there
    ny = person(timezone="America/New_York")
    assert decide(email(), ny, [], late, pol, SECRET).kind == "sent"
    # 03:00 UTC is 22:00 in New York: deferred to 08:00 New York = 12:00 UTC (EDT from Mar 8)
    d = decide(email(), ny, [], dt.datetime(2026, 3, 11, 3, 0), pol, SECRET)
    assert d.deferred_until == dt.datetime(2026, 3, 11, 12, 0)
    # a channel can opt out of quiet hours
    assert (
        decide(
            email(channel="webhook", purpose="personalization"), person(), [], late, pol, SECRET
        ).kind
        == "sent"
    )
    # an unknown person zone falls back to the shop's zone
    d = decide(email(), person(timezone="Nowhere/Land"), [], late, pol, SECRET)
    assert d.deferred_until == dt.datetime(2026, 3, 11, 8, 0)


def test_quiet_until_window_edges_and_dst():
    q = QuietHours(start="21:00", end="08:00")
    assert quiet_until(dt.datetime(2026, 1, 5, 20, 59), "UTC", q) is None
    assert quiet_until(dt.datetime(2026, 1, 5, 21, 0), "UTC", q) == dt.datetime(2026, 1, 6, 8)
    assert quiet_until(dt.datetime(2026, 1, 6, 7, 59), "UTC", q) == dt.datetime(2026, 1, 6, 8)
    assert quiet_until(dt.datetime(2026, 1, 6, 8, 0), "UTC", q) is None
    # night of the spring-forward in Berlin (Mar 29 2026): 08:00 CEST is 06:00 UTC
    assert quiet_until(dt.datetime(2026, 3, 28, 23, 0), "Europe/Berlin", q) == dt.datetime(
        2026, 3, 29, 6, 0
    )
    day = QuietHours(start="12:00", end="14:00")  # a window inside one day
    assert quiet_until(dt.datetime(2026, 1, 5, 13), "UTC", day) == dt.datetime(2026, 1, 5, 14)
    assert quiet_until(dt.datetime(2026, 1, 5, 15), "UTC", day) is None
    assert quiet_until(NOON, "UTC", None) is None


def test_quiet_hours_come_before_the_cap():
    """A deferred message is decided again later, when the cap window may have passed."""
    pol = PolicyConfig(timezone="UTC")
    late = dt.datetime(2026, 3, 10, 23, 0)
    d = decide(email(), person(), [late - dt.timedelta(hours=1)], late, pol, SECRET)
    assert d.kind == "deferred"
    again = decide(email(), person(), [late - dt.timedelta(hours=1)], d.deferred_until, pol, SECRET)
    assert again.kind == "capped"  # 22:00 + 16 h > 08:00
