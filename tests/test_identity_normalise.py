"""Identifier normalisation: e-mails, phones (E.164), ids."""

from __future__ import annotations

import pandas as pd
import pytest
from cip.profiles.identity import normalise as _normalise
from cip.profiles.identity import (
    normalise_email,
    normalise_id,
    normalise_identifier,
    normalise_phone,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def _l(s: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in s]


def test_email_trim_lower_plus_and_gmail_dots() -> None:
    got = normalise_email(
        pd.Series(
            [
                " Ann.Lee+shop@GMail.com ",
                "a.b+x@Example.co.uk",
                "J.Doe@googlemail.com",
                "+tag@x.com",
            ]
        ),
        domain_aliases={"googlemail.com": "gmail.com"},
    )
    assert _l(got) == ["annlee@gmail.com", "a.b@example.co.uk", "jdoe@gmail.com", "+tag@x.com"]


def test_email_options_can_be_switched_off() -> None:
    got = normalise_email(pd.Series(["A.B+x@gmail.com"]), strip_plus=False, dot_providers=())
    assert _l(got) == ["a.b+x@gmail.com"]


@pytest.mark.parametrize(
    "bad", ["", "   ", "no-at-sign", "a@b", "a@b@c.com", "a b@c.com", "@x.com", "a@-x.com", "x@y.c"]
)
def test_invalid_emails_are_missing(bad: str) -> None:
    assert _l(normalise_email(pd.Series([bad]))) == [None]


def test_phone_national_and_international_forms_agree() -> None:
    forms = [
        "020 7946 0958",
        "+44 20 7946 0958",
        "0044 20 7946 0958",
        "+44 (0)20 7946 0958",
        "(020) 7946-0958 ext. 12",
        "020.7946.0958",
    ]
    assert set(_l(normalise_phone(pd.Series(forms)))) == {"+442079460958"}


def test_phone_invalid_values_and_regions() -> None:
    got = normalise_phone(pd.Series(["0000000000", "12345", "abc", "", None, "07700 900123"]))
    assert _l(got) == [None] * 6  # 07700 900xxx is Ofcom's fictional range: not valid
    us = normalise_phone(
        pd.Series(["(212) 555-0100", "1 212 555 0100", "011 44 20 7946 0958"]), region="US"
    )
    assert _l(us) == ["+12125550100", "+12125550100", "+442079460958"]
    it = normalise_phone(pd.Series(["06 1234 5678"]), region="IT")
    assert _l(it) == ["+390612345678"]  # Italy keeps the leading zero
    loose = normalise_phone(pd.Series(["07700 900123"]), validation="possible")
    assert _l(loose) == ["+447700900123"]


def test_phone_helper_processes_match_in_process_results(monkeypatch) -> None:
    values = pd.Series(
        [f"+4474{i:08d}" for i in range(0, 3000, 7)] + ["0000", None, "020 7946 0958"]
    )
    cleaned = _normalise._run(
        _normalise.phone_clean_sql("c", "GB"),
        values,
        f"(SELECT {_normalise.phone_digits_sql('raw')} AS c FROM v)",
    )
    serial = _normalise.e164(cleaned)
    monkeypatch.setattr(_normalise, "_PARALLEL_FROM", 10)
    monkeypatch.setattr(_normalise, "_WORKERS", 2)
    monkeypatch.setattr(_normalise.os, "cpu_count", lambda: 2)
    parallel = _normalise.e164(cleaned)
    assert _l(parallel) == _l(serial) and _l(serial)[-1] == "+442079460958"


def test_ids_are_trimmed_and_empty_is_missing() -> None:
    assert _l(normalise_id(pd.Series([" C1 ", "", "  ", None, "c1"]))) == [
        "C1",
        None,
        None,
        None,
        "c1",
    ]
    with pytest.raises(ValueError):
        normalise_identifier("ssn", pd.Series(["1"]))


_local = st.from_regex(r"[A-Za-z0-9._+-]{1,12}", fullmatch=True)
_domain = st.sampled_from(["gmail.com", "Example.org", "googlemail.com", "shop.co.uk"])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(_local, _domain), min_size=1, max_size=20))
def test_email_normalisation_is_idempotent(pairs) -> None:
    raw = pd.Series([f" {loc}@{dom} " for loc, dom in pairs])
    kw = {"domain_aliases": {"googlemail.com": "gmail.com"}}
    once = normalise_email(raw, **kw)
    twice = normalise_email(once, **kw)
    assert _l(once) == _l(twice)
