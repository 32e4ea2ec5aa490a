"""Trigger definitions: the issue's YAML contract, journeys, and errors naming trigger and key."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest
from cip.activation.policy import PolicyConfig, parse_duration
from cip.activation.triggers.definitions import (
    CatalogWhen,
    EventWhen,
    PredictedWhen,
    ScoreWhen,
    SegmentWhen,
    SendStep,
    UnlessStep,
    WaitStep,
    validate_triggers,
)
from cip.profiles.errors import ConfigError

ISSUE_YAML = """
destinations:
  crm: {url: https://crm.example/hook}
triggers:
  - name: abandoned_cart
    when: {event: add_to_cart}
    wait: 30m
    unless: {event: [checkout, purchase]}
    channel: email
    content: {cart: true, recommend: 4}
    destination: crm
    control_pct: 10
"""


def _load(tmp_path, text):
    from cip.pipelines.config import load_config

    p = tmp_path / "cip.yaml"
    p.write_text(textwrap.dedent(text))
    return load_config(p)


def test_issue_yaml_loads_into_cip_config(tmp_path):
    cfg = _load(tmp_path, ISSUE_YAML)
    (t,) = cfg.triggers
    assert isinstance(t.when, EventWhen) and t.when.event == ["add_to_cart"]
    assert t.content.cart is True and t.content.recommend == 4
    assert t.control_pct == 10 and t.destination == "crm"
    assert cfg.destinations["crm"].url == "https://crm.example/hook"
    plan = t.plan()
    assert [type(s) for s in plan] == [WaitStep, UnlessStep, SendStep]
    assert plan[0].delta == dt.timedelta(minutes=30)
    assert plan[1].unless.event == ["checkout", "purchase"]
    assert plan[2].send.channel == "email" and plan[2].send.destination == "crm"
    assert cfg.policy == PolicyConfig()


def test_config_round_trips_through_dump(tmp_path):
    import yaml
    from cip.pipelines.config import CIPConfig, dump_config

    cfg = _load(tmp_path, ISSUE_YAML)
    again = CIPConfig.model_validate(yaml.safe_load(dump_config(cfg)))
    assert again.triggers == cfg.triggers and again.destinations == cfg.destinations


@pytest.mark.parametrize(
    ("when", "cls"),
    [
        ({"event": "signup"}, EventWhen),
        ({"event": ["add_to_cart"], "properties": {"category": ["shoes", "bags"]}}, EventWhen),
        ({"catalog": "price_drop", "min_pct": 15, "lookback_days": 14}, CatalogWhen),
        ({"catalog": "back_in_stock"}, CatalogWhen),
        ({"segment": "at_risk", "change": "entered"}, SegmentWhen),
        ({"score": "churn_probability", "above": 0.7}, ScoreWhen),
        ({"predicted": "next_order_due", "within_days": 3}, PredictedWhen),
    ],
)
def test_every_source_kind_validates(when, cls):
    (t,) = validate_triggers([{"name": "t", "when": when}])
    assert isinstance(t.when, cls)


def test_multi_step_journey_inherits_trigger_defaults():
    (t,) = validate_triggers(
        [
            {
                "name": "welcome",
                "when": {"event": "signup"},
                "channel": "email",
                "content": {"recommend": 3},
                "reentry": "never",
                "steps": [
                    {"send": None},
                    {"wait": "2d"},
                    {"unless": {"event": "purchase"}},
                    {"send": {"channel": "sms"}},
                ],
            }
        ]
    )
    plan = t.plan()
    assert [type(s).__name__ for s in plan] == ["SendStep", "WaitStep", "UnlessStep", "SendStep"]
    assert plan[0].send.channel == "email" and plan[0].send.content.recommend == 3
    assert plan[3].send.channel == "sms" and plan[3].send.content.recommend == 3
    assert t.reentry_delta is None
    assert t.purpose_of("sms") == "sms" and t.purpose_of("webhook") == "personalization"


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        (
            {"name": "cart", "when": {"event": "add_to_cart"}, "wait": "3 years"},
            "trigger 'cart': wait: invalid duration '3 years'",
        ),
        (
            {"name": "cart", "when": {"event": "add_to_cart"}, "colour": "red"},
            "trigger 'cart': colour: unknown key",
        ),
        (
            {"name": "cart", "when": {"evnt": "add_to_cart"}},
            "trigger 'cart': when: needs exactly one of event, catalog",
        ),
        (
            {"name": "drop", "when": {"catalog": "price_drop", "min_pct": 150}},
            "trigger 'drop': when.catalog.min_pct: Input should be less than or equal to 100",
        ),
        (
            {"name": "drop", "when": {"catalog": "price_drop", "lookbak_days": 3}},
            "trigger 'drop': when.catalog.lookbak_days: unknown key",
        ),
        (
            {"name": "j", "when": {"event": "x"}, "steps": [{"wait": "2d"}, {"sned": {}}]},
            "trigger 'j': steps.1: a step is one of",
        ),
        (
            {"name": "j", "when": {"event": "x"}, "steps": [{"send": {"chanel": "sms"}}]},
            "trigger 'j': steps.0.send.chanel: unknown key",
        ),
        (
            {"name": "j", "when": {"event": "x"}, "steps": [{"wait": "2d"}]},
            "trigger 'j': steps: a journey needs at least one send step",
        ),
        (
            {"name": "j", "when": {"event": "x"}, "wait": "1h", "steps": [{"send": {}}]},
            "trigger 'j': use either wait/unless or steps",
        ),
        (
            {"name": "s", "when": {"score": "churn_probability"}},
            "trigger 's': when.score: a score source needs exactly one of above / below",
        ),
        (
            {"name": "c", "when": {"event": "x"}, "channel": "fax"},
            "trigger 'c': channel: Input should be 'email', 'sms', 'push', 'webhook' or 'best'",
        ),
        (
            {"name": "c", "when": {"event": "x"}, "control_pct": 120},
            "trigger 'c': control_pct: Input should be less than or equal to 100",
        ),
        ({"when": {"event": "x"}}, "trigger #1: name: Field required"),
        (
            {"name": "Bad Name", "when": {"event": "x"}},
            "trigger 'Bad Name': name: invalid trigger name",
        ),
    ],
)
def test_errors_name_the_trigger_and_the_key(trigger, message):
    with pytest.raises(ConfigError) as err:
        validate_triggers([trigger])
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_cross_checks_destinations_and_names():
    with pytest.raises(ConfigError, match="trigger 'a': destination: unknown destination 'crm'"):
        validate_triggers([{"name": "a", "when": {"event": "x"}, "destination": "crm"}], {})
    with pytest.raises(ConfigError, match="steps.0.send.destination: channel webhook needs"):
        validate_triggers(
            [{"name": "a", "when": {"event": "x"}, "steps": [{"send": {"channel": "webhook"}}]}]
        )
    with pytest.raises(ConfigError, match=r"duplicate trigger names \['a'\]"):
        validate_triggers([{"name": "a", "when": {"event": "x"}}] * 2)


def test_config_error_names_file_trigger_and_key(tmp_path):
    text = ISSUE_YAML.replace("wait: 30m", "wait: soon")
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    msg = str(err.value)
    assert "cip.yaml" in msg and "trigger 'abandoned_cart': wait: invalid duration 'soon'" in msg
    with pytest.raises(ConfigError, match="trigger 'abandoned_cart': destination: unknown"):
        _load(tmp_path, ISSUE_YAML.replace("destination: crm", "destination: erp"))


def test_policy_section_validates(tmp_path):
    cfg = _load(
        tmp_path,
        ISSUE_YAML
        + "policy:\n  timezone: Europe/Berlin\n  control_pct: 5\n"
        + "  channels: {email: {cap: 2, per: 1d}}\n",
    )
    assert cfg.policy.timezone == "Europe/Berlin" and cfg.policy.control_pct == 5
    assert cfg.policy.channel("email").cap == 2
    assert cfg.policy.channel("email").per_delta == dt.timedelta(days=1)
    assert cfg.policy.channel("sms").cap == 1  # defaults kept for channels not listed
    with pytest.raises(ConfigError, match="policy.timezone: .*unknown time zone 'Mars/Olympus'"):
        _load(tmp_path, ISSUE_YAML + "policy: {timezone: Mars/Olympus}\n")


@pytest.mark.parametrize(
    ("text", "seconds"), [("45s", 45), ("30m", 1800), ("2h", 7200), ("2d", 172800), ("1w", 604800)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "30", "m", "2 days", "1.5h", "-2h"])
def test_bad_durations(bad):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)
